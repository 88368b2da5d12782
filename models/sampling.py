"""Persistent Gibbs chains over an RBM: the model's dreams.

`GibbsSampler` holds n chains of visible states and moves them k Gibbs steps per call, at a
temperature, optionally with a clamp mask that fixes chosen visible units (inpainting: the
clamped units keep their values, the others resample given them). The same object is the
negative phase of PCD training (Tieleman 2008), so a viewer that shows the chains while a
model trains costs nothing extra: the chains are computed for the gradient anyway.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .device import make_generator
from .rbm import BernoulliRBM


class GibbsSampler:
    """n persistent Gibbs chains over `model` (a `BernoulliRBM` or `GaussianBernoulliRBM`).

    State, all on the model's device:
        visible  [n, V]  the current sample of the visible units
        mean     [n, V]  E[v | h] of the last half-step (probabilities for binary units)
        hidden   [n, H]  the last hidden sample
    """

    def __init__(
        self,
        model,
        n_chains: int = 64,
        k: int = 1,
        temperature: float = 1.0,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ):
        if n_chains < 1:
            raise ValueError("n_chains must be at least 1")
        self.model = model
        self.k = int(k)
        self.temperature = float(temperature)
        self.generator = generator or make_generator(model.device, seed)
        self.clamp_mask: Tensor | None = None  # bool [n, V]: True = fixed
        self.clamp_values: Tensor | None = None  # [n, V]
        self.steps_taken = 0
        self.reset(n_chains)

    # ------------------------------------------------------------------------------ state
    @property
    def n_chains(self) -> int:
        return self.visible.shape[0]

    @torch.no_grad()
    def reset(self, n_chains: int | None = None, start: Tensor | None = None) -> "GibbsSampler":
        """Restart the chains: from `start` (visible states [n, V], e.g. dataset images), or from
        independent draws of the visible biases ("noise") when `start` is None."""
        n = n_chains if n_chains is not None else self.n_chains
        if start is not None:
            start = start.to(self.model.device, torch.float32).reshape(start.shape[0], -1)
            if start.shape[1] != self.model.n_visible:
                raise ValueError(f"start has {start.shape[1]} units per chain, the model {self.model.n_visible}")
            v = start.clone()
        else:
            v = self.model.initial_visible(n, generator=self.generator)
        self.visible = v
        self.mean = v.clone()
        self.hidden = torch.zeros(v.shape[0], self.model.n_hidden, device=v.device)
        if self.clamp_mask is not None and self.clamp_mask.shape[0] != v.shape[0]:
            self.unclamp()
        self._apply_clamp()
        self.steps_taken = 0
        return self

    # ----------------------------------------------------------------------------- clamping
    @torch.no_grad()
    def clamp(self, mask: Tensor, values: Tensor | None = None) -> None:
        """Fix the visible units where `mask` is True ([V] for every chain, or [n, V]) to `values`
        ([V] or [n, V]; the chains' current states when None). The rest keep resampling."""
        mask = mask.to(self.model.device, torch.bool).reshape(-1, self.model.n_visible)
        mask = mask.expand(self.n_chains, -1).clone()
        if values is None:
            values = self.visible
        values = values.to(self.model.device, torch.float32).reshape(-1, self.model.n_visible)
        self.clamp_mask = mask
        self.clamp_values = values.expand(self.n_chains, -1).clone()
        self._apply_clamp()

    def unclamp(self) -> None:
        self.clamp_mask = None
        self.clamp_values = None

    def _apply_clamp(self) -> None:
        if self.clamp_mask is not None:
            self.visible = torch.where(self.clamp_mask, self.clamp_values, self.visible)
            self.mean = torch.where(self.clamp_mask, self.clamp_values, self.mean)

    # ------------------------------------------------------------------------------ moving
    @torch.no_grad()
    def step(self, k: int | None = None) -> "GibbsSampler":
        """Advance every chain k Gibbs steps (v -> h -> v), keeping clamped units fixed."""
        k = self.k if k is None else int(k)
        if type(self.model) is BernoulliRBM:
            self._bernoulli_steps(k)
        else:
            model, t, g = self.model, self.temperature, self.generator
            for _ in range(k):
                _, self.hidden = model.sample_hidden(self.visible, t, g)
                self.mean, self.visible = model.sample_visible(self.hidden, t, g)
                self._apply_clamp()
        self.steps_taken += k
        return self

    def _scratch(self, n: int, V: int, H: int, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        """Reused work buffers: hidden probabilities [n, H] and uniforms [n, H], [n, V]."""
        bufs = getattr(self, "_bufs", None)
        if bufs is None or bufs[0].shape != (n, H) or bufs[2].shape != (n, V) or bufs[0].dtype != dtype or bufs[0].device != self.visible.device:
            dev = self.visible.device
            bufs = (torch.empty(n, H, device=dev, dtype=dtype), torch.empty(n, H, device=dev, dtype=dtype),
                    torch.empty(n, V, device=dev, dtype=dtype))
            self._bufs = bufs
        return bufs

    def _bernoulli_steps(self, k: int) -> None:
        """`k` steps for a binary RBM with fewer allocations and passes over memory than the
        generic model calls; draws the same random numbers in the same order, so the chains
        are bit-for-bit those of `model.sample_hidden` / `model.sample_visible`."""
        m, t, g = self.model, self.temperature, self.generator
        W, b, c = m.weight.detach(), m.visible_bias.detach(), m.hidden_bias.detach()
        v = self.visible
        ph, uh, uv = self._scratch(v.shape[0], m.n_visible, m.n_hidden, W.dtype)
        for _ in range(k):
            torch.addmm(c, v, W, out=ph)  # hidden logits
            if t != 1.0:
                ph.div_(t)
            ph.sigmoid_()  # p(h | v)
            torch.rand(uh.shape, generator=g, out=uh)
            h = torch.lt(uh, ph, out=torch.empty_like(ph))  # a binary sample of h, as floats
            mean = torch.addmm(b, h, W.t())  # visible logits
            if t != 1.0:
                mean.div_(t)
            mean.sigmoid_()  # E[v | h]
            torch.rand(uv.shape, generator=g, out=uv)
            v = torch.lt(uv, mean, out=torch.empty_like(mean))
            self.hidden, self.mean, self.visible = h, mean, v
            if self.clamp_mask is not None:
                self._apply_clamp()
                v = self.visible

    __call__ = step

    def states(self, kind: Literal["probs", "samples"] = "probs") -> Tensor:
        """The chains' visible units [n, V]: E[v | h] ("probs") or the sampled states."""
        return self.mean if kind == "probs" else self.visible

    @torch.no_grad()
    def images(self, kind: Literal["probs", "samples"] = "probs") -> Tensor:
        """The chains as images [n, C, H, W] in [0, 1], on the CPU."""
        return self.model.visible_to_images(self.states(kind)).detach().cpu()

    # ------------------------------------------------------------------------ persistence
    def state_tensors(self) -> dict[str, Tensor]:
        out = {
            "visible": self.visible,
            "mean": self.mean,
            "hidden": self.hidden,
            "rng": self.generator.get_state(),
        }
        if self.clamp_mask is not None:
            out["clamp_mask"] = self.clamp_mask.to(torch.uint8)
            out["clamp_values"] = self.clamp_values
        return out

    def load_state_tensors(self, state: dict[str, Tensor]) -> None:
        dev = self.model.device
        # Fresh, aligned copies: BLAS may round differently on memory read straight from a file.
        self.visible = state["visible"].to(dev, torch.float32, copy=True)
        self.mean = state["mean"].to(dev, torch.float32, copy=True)
        self.hidden = state["hidden"].to(dev, torch.float32, copy=True)
        if "rng" in state:
            self.generator.set_state(state["rng"].to(torch.uint8).cpu())
        if "clamp_mask" in state:
            self.clamp_mask = state["clamp_mask"].to(dev, torch.bool)
            self.clamp_values = state["clamp_values"].to(dev, torch.float32, copy=True)
        else:
            self.unclamp()
