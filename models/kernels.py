"""Fused CPU kernels: a linear layer and its sigmoid in one oneDNN call, in float32 or bfloat16.

An RBM's conditionals are σ(vW + c) and σ(hWᵀ + b). torch's addmm followed by an in-place
sigmoid reads and writes the result twice; oneDNN's linear with a fused sigmoid epilogue writes
it once, and where torch's BLAS is MKL on an AMD CPU (MKL runs its AVX2 code there) it also
computes the product itself twice as fast (on a 2-core AMD EPYC with AVX-512, one thread,
64×784×500: 99 GFLOP/s with addmm, 191 with oneDNN, 220 over packed weights, 367 in bfloat16).
torch exposes it as `torch.ops.mkldnn._linear_pointwise`, the op its own compiler emits for
CPU linear layers; it is private, so `onednn_available()` checks once that it exists and agrees
with addmm, and everything falls back to addmm + sigmoid where it does not (other builds,
other devices, autograd). Each call builds its oneDNN primitive (some µs), so small products
may be faster with addmm: which path runs at which size is measured on the machine at hand
(`models.calibrate`), never assumed.

`PackedRBM` goes one step further for chains whose weights sit still (the Dreams viewer): both
conditionals over weights reordered once into oneDNN's blocked layout, in float32 or bfloat16.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from . import calibrate


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


def _plain_cpu(x: Tensor, *params: Tensor) -> bool:
    """float32 CPU tensors, no gradient wanted: oneDNN may take the product."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, *params)))
        and onednn_available()
    )


def sigmoid_linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """σ(x weightᵀ + bias): [B, in] -> [B, out], with `weight` [out, in] as a linear layer's
    (a transposed view is fine). One fused oneDNN call for float32 CPU tensors when no gradient
    is wanted and the calibration says it is faster at this size; torch.sigmoid(F.linear(...))
    (the same numbers to about 1e-6) otherwise. Always float32 (bfloat16 is the callers' choice,
    where they know the quality holds: `PackedRBM`, the CD step)."""
    if _plain_cpu(x, weight, bias):
        macs = x.shape[0] * weight.shape[0] * weight.shape[1]
        if calibrate.calibration().fastest(("addmm", "fused"), macs) == "fused":
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "sigmoid", [], "")
    return torch.sigmoid(F.linear(x, weight, bias))


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x weightᵀ + bias (`weight` [out, in] as a linear layer's), a new tensor: oneDNN's linear
    for float32 CPU products where the calibration finds it faster, else F.linear."""
    if _plain_cpu(x, weight, bias):
        macs = x.shape[0] * weight.shape[0] * weight.shape[1]
        if calibrate.calibration().fastest(("addmm", "fused"), macs) == "fused":
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


def gram_update(buf: Tensor, a: Tensor, b: Tensor, beta: float) -> Tensor:
    """buf ← beta·buf + aᵀb in place ([K, M]ᵀ [K, N] -> [M, N]): the CD update's one GEMM of
    both phases' statistics. addmm_ (one pass over buf) or, where the calibration finds oneDNN
    faster at this size, oneDNN's product and one more pass to add it (a and b may be bfloat16,
    the product is then accumulated in float32)."""
    macs = a.shape[0] * a.shape[1] * b.shape[1]
    if a.dtype == torch.bfloat16:  # torch.matmul's bf16 GEMM is oneDNN's (and public)
        return buf.mul_(beta).add_(a.t() @ b)
    if _plain_cpu(a, b) and calibrate.calibration().fastest(("addmm", "fused"), macs) == "fused":
        prod = torch.ops.mkldnn._linear_pointwise(a.t(), b.t(), None, "none", [], "")  # [M, N]
        return buf.mul_(beta).add_(prod)
    return buf.addmm_(a.t(), b, beta=beta)


class PackedRBM:
    """A binary RBM's two conditionals as oneDNN primitives over weights packed once, with the
    sigmoid fused: p(h | v) = σ((vW + c)/T) and E[v | h] = σ((hWᵀ + b)/T). `dtype` float32
    (they agree with addmm + sigmoid to about 1e-6) or bfloat16 (weights rounded to 8 bits of
    mantissa, sums in float32, probabilities returned as bfloat16: within 4e-3 of float32's).
    For chains whose weights sit still between calls (`models.sampling.GibbsSampler`). `key`
    says which weights, temperature and dtype it packed."""

    def __init__(self, model, temperature: float = 1.0, dtype: torch.dtype = torch.float32, rows: int = 64):
        W, b, c = (p.detach() for p in (model.weight, model.visible_bias, model.hidden_bias))
        self.key = self.key_of(model, temperature, dtype)
        self.dtype = dtype
        t = float(temperature)
        Wt = W / t if t != 1.0 else W  # σ((vW + c)/T) = σ(v(W/T) + c/T)
        reorder = torch.ops.mkldnn._reorder_linear_weight
        # `rows`: a layout hint, the rows of one call (any number of rows works)
        self._up = reorder(Wt.t().contiguous().to(dtype), rows)  # the linear weight [H, V] of v -> h
        self._down = reorder(Wt.contiguous().to(dtype), rows)  # the linear weight [V, H] of h -> v
        self._c, self._b = (c / t).to(dtype).contiguous(), (b / t).to(dtype).contiguous()

    @staticmethod
    def key_of(model, temperature: float, dtype: torch.dtype = torch.float32) -> tuple:
        ps = (model.weight, model.visible_bias, model.hidden_bias)
        return tuple((p.data_ptr(), p._version) for p in ps) + (float(temperature), dtype)

    def hidden_probs(self, v: Tensor) -> Tensor:
        """p(h | v) [g, H] in this packing's dtype (`v` in that dtype)."""
        return torch.ops.mkldnn._linear_pointwise(v, self._up, self._c, "sigmoid", [], "")

    def visible_probs(self, h: Tensor) -> Tensor:
        """E[v | h] [g, V] in this packing's dtype (`h` in that dtype)."""
        return torch.ops.mkldnn._linear_pointwise(h, self._down, self._b, "sigmoid", [], "")
