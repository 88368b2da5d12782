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

_MINUS_HALF = torch.tensor(-32768.0)  # -2^15


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

        On the CPU each draw compares a 16-bit uniform integer r in [-2^15, 2^15) with
        p·2^16 - 2^15, so P(1) = ceil(2^16 p) / 2^16: exact at p = 0 and p = 1, never more
        than 2^-16 above p in between."""
        bits = self._bits
        if out is None:
            out = torch.empty_like(p)
        if bits is None:
            return torch.lt(torch.rand(p.shape, device=p.device, dtype=p.dtype, generator=self.generator), p, out=out)
        n = p.numel()
        r = torch.from_numpy(bits.random_raw((n + 3) >> 2).view(np.int16)[:n]).view(p.shape)  # [-2^15, 2^15)
        return torch.lt(r, torch.add(_MINUS_HALF, p, alpha=65536.0, out=scratch), out=out)  # r < p·2^16 - 2^15

    def bernoulli_fn(self, shape: tuple[int, ...]):
        """`bernoulli(p, out, scratch)` for tensors of one `shape`, with the constants worked out
        once: the same draws, for hot loops where Python's own time counts."""
        bits = self._bits
        if bits is None:
            return self.bernoulli
        n = int(np.prod(shape))
        words, raw, from_numpy, add, lt = (n + 3) >> 2, bits.random_raw, torch.from_numpy, torch.add, torch.lt
        shape = tuple(shape)

        def draw(p: Tensor, out: Tensor, scratch: Tensor) -> Tensor:
            r = from_numpy(raw(words).view(np.int16)[:n]).view(shape)
            return lt(r, add(_MINUS_HALF, p, alpha=65536.0, out=scratch), out=out)

        return draw

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
