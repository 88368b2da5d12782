"""Fast uniform noise for binary units: the Bernoulli draws of Gibbs sampling and CD.

Every Gibbs half-step of a binary RBM compares one uniform number per unit with its
probability. torch's CPU generator (a sequential Mersenne Twister) yields about 3 ns per
float32 here, so for 64 chains of a 32×32 RBM the draws took a third of a Gibbs step, as long
as one of its two matmuls. `NoiseSource` draws 64-bit words from numpy's SFC64 (a small, fast
chaotic generator that passes PractRand and TestU01's BigCrush) instead and cuts each word into
four 16-bit uniform integers, one per Bernoulli draw: the probabilities are resolved to 2^-16,
far finer than anything a few hundred chains can tell apart, at a fifth of torch.rand's cost.

On other devices (CUDA, MPS), where torch's Philox generator is fast and the tensors live
there, `NoiseSource` calls torch.rand with the torch generator it was made from.

The stream is seeded from the torch generator's seed, so one seed fixes both, and its state
round-trips through checkpoints as a small int64 tensor (`state_tensor` / `load_state_tensor`).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

_HALF = torch.tensor(0.5)
_ULP = 2.0**-16


def to_uniform(r: Tensor, out: Tensor | None = None) -> Tensor:
    """The 16-bit uniform integers r in [-2^15, 2^15) (int16, or float32 holding them) as
    float32 uniforms u = (r + 2^15)/2^16 in [0, 1) (exact: multiples of 2^-16), in one pass
    (into `out` when given, which may be r itself)."""
    return torch.add(_HALF, r, alpha=_ULP, out=out)


class NoiseSource:
    """Bernoulli samples drawn from a fast random stream tied to a torch `generator`."""

    def __init__(self, generator: torch.Generator, stream: int = 0):
        self.generator = generator
        self.stream = int(stream)  # independent streams of one seed (one per chain group)
        self.device = torch.device(generator.device)
        self._bits: np.random.SFC64 | None = None
        if self.device.type == "cpu":
            self.reseed()

    def reseed(self) -> None:
        """Restart the CPU stream from the torch generator's seed and the stream number."""
        if self.device.type == "cpu":
            seq = np.random.SeedSequence([self.generator.initial_seed(), 0x6A09E667, self.stream])
            self._bits = np.random.SFC64(seq)

    # ------------------------------------------------------------------------------ draws
    def bernoulli(self, p: Tensor, out: Tensor | None = None, scratch: Tensor | None = None) -> Tensor:
        """Binary samples with P(1) = p, as p's dtype (into `out` when given).

        On the CPU each draw compares a uniform u = k/2^16 (k a 16-bit uniform integer) with
        p, so P(1) = ceil(2^16 p) / 2^16: exact at p = 0 and p = 1, never more than 2^-16
        above p in between. `scratch`: a float32 buffer of p's shape for the uniforms."""
        bits = self._bits
        if out is None:
            out = torch.empty_like(p)
        if bits is None:
            return torch.lt(torch.rand(p.shape, device=p.device, dtype=p.dtype, generator=self.generator), p, out=out)
        n = p.numel()
        r = torch.from_numpy(bits.random_raw((n + 3) >> 2).view(np.int16)[:n]).view(p.shape)  # [-2^15, 2^15)
        if scratch is not None and scratch.dtype != torch.float32:
            scratch = None  # the uniforms need float32's 24 bits
        return torch.lt(to_uniform(r, scratch), p, out=out)

    def uniforms16(self, *sizes: int) -> list[Tensor]:
        """int16 tensors of `sizes` 16-bit uniform integers in [-2^15, 2^15): exactly the ones
        that successive `bernoulli` calls of those sizes would compare with their
        probabilities, from one call into the stream (the hot loop of `models.sampling` draws a
        Gibbs step's two halves at once). Views of one new array; CPU streams only."""
        words = [(int(n) + 3) >> 2 for n in sizes]
        raw = self._bits.random_raw(sum(words)).view(np.int16)
        out, o = [], 0
        for n, w in zip(sizes, words):
            out.append(torch.from_numpy(raw[o : o + n]))
            o += 4 * w
        return out

    def raw16(self, words: int) -> np.ndarray:
        """The next `words` 64-bit words of the stream as a numpy int16 array [4 · words]: the
        16-bit integers r in [-2^15, 2^15) that `uniforms16` cuts them into. CPU streams only."""
        return self._bits.random_raw(words).view(np.int16)

    # ------------------------------------------------------------------------ persistence
    def state_tensor(self) -> Tensor:
        """The CPU stream's state as int64 [6] (4 state words, the buffered half-word flag and
        value); an empty tensor on other devices, whose state is the torch generator's."""
        if self._bits is None:
            return torch.zeros(0, dtype=torch.int64)
        st = self._bits.state
        words = np.asarray(st["state"]["state"], dtype=np.uint64).view(np.int64)
        extra = np.array([st["has_uint32"], st["uinteger"]], dtype=np.int64)
        return torch.from_numpy(np.concatenate([words, extra]))

    def load_state_tensor(self, t: Tensor) -> None:
        if self._bits is None or t.numel() == 0:
            return
        a = t.detach().cpu().to(torch.int64).numpy()
        if a.shape != (6,):
            raise ValueError(f"a noise state has 6 words, this one {a.shape}")
        self._bits.state = {
            "bit_generator": "SFC64",
            "state": {"state": a[:4].view(np.uint64).copy()},
            "has_uint32": int(a[4]),
            "uinteger": int(np.int64(a[5]).view(np.uint64)),
        }
