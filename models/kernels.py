"""Fused CPU kernels: a linear layer and its sigmoid in one oneDNN call.

An RBM's conditionals are σ(vW + c) and σ(hWᵀ + b). torch's addmm (MKL) followed by an in-place
sigmoid reads and writes the result twice; oneDNN's linear with a fused sigmoid epilogue writes
it once and, at the RBM's shapes (64×784×500 on 2 cores), also runs the matrix product itself
faster: 265 µs instead of 341 µs for σ(vW + c). torch exposes it as
`torch.ops.mkldnn._linear_pointwise`, the op its own compiler emits for CPU linear layers; it is
private, so `onednn_available()` checks once that it exists and agrees with addmm, and everything
falls back to addmm + sigmoid where it does not (other builds, other devices, autograd). Each call
builds its oneDNN primitive (about 20 µs), so small products stay with addmm: the two cross at
about 6-8 million multiply-adds on this machine (`bench`-style timings in `ONEDNN_MIN_MACS`).

`PackedRBM` goes one step further for chains whose weights sit still (the Dreams viewer): both
conditionals over weights reordered once into oneDNN's blocked layout.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor


# Below this many multiply-adds (rows × in × out) addmm + sigmoid is faster: measured on 2 cores,
# 64×256×256 (4.2 M) 64 µs either way, 64×512×256 (8.4 M) 105 µs with addmm and 101 µs fused.
ONEDNN_MIN_MACS = 8_000_000
# With the weights packed once (`models.sampling.PackedRBM`) the per-call cost is smaller: the two
# cross at about 4 M (32×512×256: 99 µs with addmm, 98 µs packed; 32×1024×256: 192 and 172 µs).
PACKED_MIN_MACS = 4_000_000


@functools.cache
def onednn_available() -> bool:
    """Whether torch's oneDNN linear with a fused sigmoid works here and agrees with addmm."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        g = torch.Generator().manual_seed(0)
        W, c, x = torch.randn(16, 8, generator=g), torch.randn(8, generator=g), torch.rand(3, 16, generator=g)
        want = torch.sigmoid(torch.addmm(c, x, W))
        dense = torch.ops.mkldnn._linear_pointwise(x, W.t(), c, "sigmoid", [], "")
        packed = torch.ops.mkldnn._linear_pointwise(x, torch.ops.mkldnn._reorder_linear_weight(W.t().contiguous(), 3), c, "sigmoid", [], "")
        return bool(torch.allclose(dense, want, atol=1e-5) and torch.allclose(packed, want, atol=1e-5))
    except Exception:  # an older or a differently built torch: addmm it is
        return False


def sigmoid_linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """σ(x weightᵀ + bias): [B, in] -> [B, out], with `weight` [out, in] as a linear layer's
    (a transposed view is fine). One fused oneDNN call for float32 CPU tensors when no gradient
    is wanted and the product is large enough; torch.sigmoid(F.linear(...)) (the same numbers to
    about 1e-6) otherwise."""
    if (
        x.device.type == "cpu"
        and x.shape[0] * weight.shape[0] * weight.shape[1] >= ONEDNN_MIN_MACS
        and x.dtype == torch.float32
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or bias.requires_grad))
        and onednn_available()
    ):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "sigmoid", [], "")
    return torch.sigmoid(F.linear(x, weight, bias))


class PackedRBM:
    """A binary RBM's two conditionals as oneDNN primitives over weights packed once, with the
    sigmoid fused: p(h | v) = σ((vW + c)/T) and E[v | h] = σ((hWᵀ + b)/T), float32 throughout
    (they agree with addmm + sigmoid to about 1e-6). For chains whose weights sit still between
    calls (`models.sampling.GibbsSampler`): at 32 chains on one core the two conditionals take
    10-15% less time than addmm + sigmoid. `key` says which weights (and temperature) it packed."""

    def __init__(self, model, temperature: float = 1.0):
        W, b, c = (p.detach() for p in (model.weight, model.visible_bias, model.hidden_bias))
        self.key = self.key_of(model, temperature)
        t = float(temperature)
        Wt = W / t if t != 1.0 else W  # σ((vW + c)/T) = σ(v(W/T) + c/T)
        reorder = torch.ops.mkldnn._reorder_linear_weight
        rows = 32  # a layout hint: the rows of one chain group (any number of rows works)
        self._up = reorder(Wt.t().contiguous(), rows)  # the linear weight [H, V] of v -> h
        self._down = reorder(Wt.contiguous(), rows)  # the linear weight [V, H] of h -> v
        self._c, self._b = (c / t).contiguous(), (b / t).contiguous()

    @staticmethod
    def key_of(model, temperature: float) -> tuple:
        ps = (model.weight, model.visible_bias, model.hidden_bias)
        return tuple((p.data_ptr(), p._version) for p in ps) + (float(temperature),)

    def hidden_probs(self, v: Tensor) -> Tensor:
        return torch.ops.mkldnn._linear_pointwise(v, self._up, self._c, "sigmoid", [], "")  # [g, H]

    def visible_probs(self, h: Tensor) -> Tensor:
        return torch.ops.mkldnn._linear_pointwise(h, self._down, self._b, "sigmoid", [], "")  # [g, V]
