"""Sampling the texture RBM: `ConvGibbsSampler` (chains on an H×W torus, the dream brush's
clamp, annealing), its fast CPU sweeps (`_FastSweeps`, bfloat16 where the CPU has it), `synthesize` and the seam measure.
Every tensor stays on the model's device (no round trip to the CPU inside a sweep, except
`_FastSweeps`, which only runs on a CPU)."""
from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..device import make_generator
from ..noise import NoiseSource
from ..sampling import ChainStates, Clamping
from .model import MAX_SAMPLER_BYTES, MAX_SIDE, ConvRBM, ConvRBMError, _pads, circular_pad

def _side(name: str, value: Any, model: ConvRBM) -> int:
    if type(value) is not int or not 1 <= value <= MAX_SIDE:
        raise ConvRBMError(f"the {name} must be a whole number of pixels from 1 to {MAX_SIDE} (got {value!r})")
    p = model.pooling
    if value % p:
        raise ConvRBMError(f"the {name} ({value} px) must be a multiple of the pooling size {p}")
    return value


def seed_to_size(images: Tensor, height: int, width: int) -> Tensor:
    """Images [N, C, h, w] tiled (when smaller) and centre-cropped to height × width."""
    h, w = images.shape[-2:]
    reps_y, reps_x = -(-height // h), -(-width // w)
    if reps_y > 1 or reps_x > 1:
        images = images.repeat(1, 1, reps_y, reps_x)
    h, w = images.shape[-2:]
    top, left = (h - height) // 2, (w - width) // 2
    return images[..., top : top + height, left : left + width]


def bf16_convolutions_available(device: torch.device) -> bool:
    """Whether oneDNN runs bfloat16 convolutions natively here (a CPU with AVX-512 BF16 or AMX)."""
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # an older or newer torch without the query
        return False


_LOG2E = 1.0 / math.log(2.0)


def draw_pooled(logits: Tensor, pooling: int, uniforms: Tensor, out: Tensor, scratch: Tensor | None = None,
                flags: Tensor | None = None) -> Tensor:
    """Probabilistic max-pooling drawn exactly, one uniform per block (into `out`, any dtype).

    logits [n, K, H, W] (H, W multiples of `pooling`, any memory layout) are the units'
    I = W ⋆ v + c; each k×k block has one unit on with probability exp(I_i) / S, or none with
    1 / S, S = 1 + Σ_block exp(I_j) (`ConvRBM.draw_hidden`'s distribution). With c_a the
    cumulative sums of exp(I) over the block's units in row-major order and t = u·S (u ~ U[0, 1),
    `uniforms` [n, K, H/k, W/k]), unit a is on when c_(a-1) ≤ t < c_a: probability exp(I_a) / S,
    and none is when t ≥ c_(k²), probability 1 / S. That is one exp per unit and one uniform
    per block instead of the Gumbel-max trick's two logs per unit; every step runs on strided
    views of the maps as blocks (no copies into a blocks-last layout). If a logit overflows
    exp (above ~88), the blocks are shifted by their largest logit first (exact as well).
    `scratch` (float32) and `flags` (bool), of the logits' shape and layout, are buffers
    reused between calls; `uniforms` is overwritten."""
    k = pooling
    n, K, H, W = logits.shape
    hh, ww = H // k, W // k
    e = scratch if scratch is not None else torch.empty_like(logits, dtype=torch.float32)

    def units(t: Tensor) -> list[Tensor]:  # the block's k² units, each [n, K, H/k, W/k], as views
        b = t.unflatten(3, (ww, k)).unflatten(2, (hh, k))
        return [b[:, :, :, dy, :, dx] for dy in range(k) for dx in range(k)]

    def cumulative() -> Tensor:  # e's units hold c_1 .. c_(k²) after it; returns c_(k²)
        es = units(e)
        for prev, unit in zip(es, es[1:]):
            unit.add_(prev)
        return es[-1]

    e.copy_(logits).mul_(_LOG2E).exp2_()  # exp(I) as 2^(I·log2 e): torch's exp2 is 2-4× faster than its exp here
    total = cumulative()
    if not math.isfinite(float(total.amax())):  # shift each block by max(0, its largest logit)
        m = F.max_pool2d(logits.float(), k).clamp_min_(0.0)
        e.copy_(logits)
        for unit in units(e):
            unit.sub_(m).mul_(_LOG2E).exp2_()
        total = cumulative()
        uniforms.mul_(total.add((-m).exp_()))  # t = u·(exp(-m) + Σ exp(I - m))
    else:
        uniforms.addcmul_(uniforms, total)  # t = u·(1 + Σ exp(I))
    for unit in units(e):  # c_a - t
        unit.sub_(uniforms)
    f = torch.gt(e, 0.0, out=flags) if flags is not None else torch.gt(e, 0.0)  # t < c_a
    f8 = units(f.view(torch.uint8))
    for prev, unit in reversed(list(zip(f8, f8[1:]))):  # [c_(a-1) ≤ t < c_a]: the flags are 0…0 1…1 in a block
        unit.sub_(prev)
    return out.copy_(f.view(torch.uint8))  # (bool to bfloat16 copies 10× slower than uint8)


class _FastSweeps:
    """Block-Gibbs sweeps of a free-running sampler on the CPU, for big canvases.

    The two convolutions run in bfloat16 where oneDNN has it natively (AVX-512 BF16, AMX),
    else in float32 (`dtype`), channels-last; hidden units are 0 or 1, exact in bfloat16, and
    a logit rounded to 8 bits of mantissa moves a probability by at most 0.2 %. On one thread
    of a Zen 5 core a 512² sample (40 sweeps) took 1.1 s in bfloat16, 1.6 s in float32 and
    19 s on the generic path (f×f convolutions, Gumbel-max draws). Both are cast as convolutions with 1×f kernels, which oneDNN runs 2× (hidden
    side) and 6× (visible side) faster on one thread than the f×f ones with one input or
    output channel: the hidden side reads f row-shifted copies of each padded input channel
    as its input channels, the visible side writes one output channel per filter row and sums
    those f maps each shifted by its row. The hidden draws (`draw_pooled`, or a Bernoulli
    draw without pooling) go straight into the middle of a padded buffer whose
    borders are then copied from the opposite edges (the torus). Both halves run a strip of
    rows at a time (`strip_units`, `strip_outputs`), whose buffers are kept between sweeps:
    only the padded hidden map (n × K × H × W: 134 M units, 268 MB in bfloat16, for 2048² and
    K = 32) is whole, and no big tensor is allocated per sweep. Only the generic path trains (its weights change every step; this
    one caches them converted)."""

    #: Values per strip of rows that a sweep's hidden half computes at a time (hidden units, or
    #: row-shifted inputs when C·f > K: about 7 MB of buffers, so that the strip stays in the
    #: CPU's caches through the draw's dozen passes instead of streaming a 2048² map through
    #: memory for each), and values of the visible convolution's output (C·f per pixel) per
    #: strip of its half (fewer, larger strips: each one's f - 1 extra rows cost; 2048²: 230
    #: ms with 113 rows, 255 with 56, 330 with 16 or all 2048).
    strip_units = 1 << 20
    strip_outputs = 1 << 21

    def __init__(self, model: ConvRBM, dtype: torch.dtype | None = None):
        self.model = model
        # bfloat16 where oneDNN runs it natively; float32 elsewhere, where the rest (the 1×f
        # convolutions, the strips, one uniform per pooling block) pays just the same
        self.dtype = dtype or (torch.bfloat16 if bf16_convolutions_available(torch.device("cpu")) else torch.float32)
        self._key = None
        self._buffers: dict[str, Tensor] = {}

    def _weights(self) -> tuple[Tensor, Tensor]:
        """(hidden-side weights [K, C·f, 1, f], visible-side weights [C·f, K, 1, f]) in `dtype`,
        channels-last, converted again only when the model's weight changes."""
        m = self.model
        key = (m.weight._version, m.weight.data_ptr())
        if self._key != key:
            w = m.weight.detach()
            K, C, f, _ = w.shape
            # input channel (c, i): row i of channel c, so W_k ⋆ x = Σ_(c, i) (row i of W_kc) ⋆ (x_c shifted up i rows)
            self._wh = w.reshape(K, C * f, 1, f).to(self.dtype).contiguous(memory_format=torch.channels_last)
            # the visible side correlates with the flipped filters; output channel (c, i) takes their row i
            flipped = w.flip(-1, -2).transpose(0, 1)  # [C, K, f, f]
            self._wv = (flipped.permute(0, 2, 1, 3).reshape(C * f, K, 1, f).to(self.dtype)
                        .contiguous(memory_format=torch.channels_last))
            self._key = key
        return self._wh, self._wv

    def _buffer(self, name: str, shape: tuple[int, ...], dtype, channels_last: bool = True) -> Tensor:
        b = self._buffers.get(name)
        if b is None or tuple(b.shape) != shape or b.dtype != dtype:
            b = torch.zeros(shape, dtype=dtype)
            if channels_last and b.dim() == 4:
                b = b.contiguous(memory_format=torch.channels_last)
            self._buffers[name] = b
        return b

    @staticmethod
    def _strip(height: int, per_row: int, budget: int, multiple: int = 1) -> int:
        """Rows per strip: about `budget` values of `per_row` each, a multiple of `multiple` (the
        pooling: whole blocks), at least one multiple and at most the height."""
        return min(height, max(multiple, budget // per_row // multiple * multiple))

    def sweep(self, v: Tensor, t: float, noise: NoiseSource, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """One sweep from visible states v [n, C, H, W]: (hidden draw (a view, in `dtype`), E[v | h], v)."""
        m = self.model
        wh, wv = self._weights()
        n, C, H, W = v.shape
        K, f = m.n_filters, m.filter_size
        before, after = _pads(f)
        # the temperature divides the logits: scale the (small) visible input and the bias instead
        scale = m._channel(1.0 / (m.variance.detach() * t)) if not m.binary_visible else 1.0 / t
        x = circular_pad(v * scale, f).to(self.dtype)  # [n, C, H+f-1, W+f-1]
        bias = (m.hidden_bias.detach() / t).to(self.dtype)
        hp = self._buffer("hp", (n, K, H + f - 1, W + f - 1), self.dtype)
        a, b = after, before
        rows = self._strip(H, n * W * max(K, C * f), self.strip_units, m.pooling)
        for y in range(0, H, rows):
            self._draw_hidden(x, y, min(rows, H - y), rows, wh, bias, noise, hp[:, :, a + y : a + min(y + rows, H), a : a + W])
        # the torus: the padded map's borders are the opposite edges (rows, then columns over all rows)
        hp[:, :, :a, a : a + W] = hp[:, :, H : H + a, a : a + W]
        hp[:, :, a + H :, a : a + W] = hp[:, :, a : a + b, a : a + W]
        hp[:, :, :, :a] = hp[:, :, :, W : W + a]
        hp[:, :, :, a + W :] = hp[:, :, :, a : a + b]
        mean = torch.empty(n, C, H, W)
        rows = self._strip(H, n * W * C * f, self.strip_outputs)
        for y in range(0, H, rows):
            s = min(rows, H - y)
            o = F.conv2d(hp[:, :, y : y + s + f - 1], wv)  # [n, C·f, s+f-1, W]: channel (c, i) is filter row i's part, i rows low
            for c in range(C):
                mc = mean[:, c, y : y + s]
                mc.copy_(o[:, c * f, :s])
                for i in range(1, f):
                    mc.add_(o[:, c * f + i, i : i + s])
        mean.add_(m._channel(m.visible_bias.detach()))
        if m.binary_visible:
            mean = torch.sigmoid(mean if t == 1.0 else mean / t)
        return hp[:, :, a : a + H, a : a + W], mean, m.draw_visible(mean, t, generator)

    def _draw_hidden(self, x: Tensor, y: int, s: int, rows: int, wh: Tensor, bias: Tensor, noise: NoiseSource,
                     out: Tensor) -> None:
        """The hidden draws of rows y … y+s-1 (whole pooling blocks) into `out` [n, K, s, W] (a view
        of the padded buffer), from the padded scaled input x [n, C, H+f-1, W+f-1]. The buffers
        hold a full strip (`rows` rows); the last strip of a sweep may use fewer of them."""
        m = self.model
        n, C = x.shape[:2]
        K, f, k = m.n_filters, m.filter_size, m.pooling
        W = out.shape[-1]
        shifted = self._buffer("shifted", (n, C * f, rows, x.shape[-1]), self.dtype)[:, :, :s]
        for c in range(C):
            for i in range(f):
                shifted[:, c * f + i] = x[:, c, y + i : y + i + s]
        logits = F.conv2d(shifted, wh, bias)  # [n, K, s, W] channels-last
        flags = self._buffer("flags", (n, K, rows, W), torch.bool)[:, :, :s]
        scratch = self._buffer("z", (n, K, rows, W), torch.float32)[:, :, :s]
        if k == 1:
            # Uniform noise as models.noise.NoiseSource draws it (16-bit integers r from its
            # fast stream), in channels-last order: the integers are independent, so laying
            # them out [n, s, W, K] changes nothing but the memory order. On when
            # r < p·2¹⁶ - 2¹⁵ (NoiseSource.bernoulli).
            u = self._buffer("u", (n, K, rows, W), torch.float32)[:, :, :s]
            count = n * K * s * W
            r = torch.from_numpy(noise._bits.random_raw((count + 3) >> 2).view(np.int16)[:count])
            u.copy_(r.view(n, s, W, K).permute(0, 3, 1, 2))
            torch.lt(u, scratch.copy_(logits).sigmoid_().mul_(65536.0).sub_(32768.0), out=flags)
            out.copy_(flags.view(torch.uint8))  # (bool to bfloat16 copies 10× slower than uint8)
        else:
            # one float32 uniform per block (24 bits), in the maps' channels-last order
            count = n * (s // k) * (W // k) * K  # (numpy fills C-contiguous arrays only: the first `count` of a flat buffer)
            u = self._buffer("u", (n * (rows // k) * (W // k) * K,), torch.float32, channels_last=False)[:count]
            np.random.Generator(noise._bits).random(out=u.numpy(), dtype=np.float32)
            u = u.view(n, s // k, W // k, K)
            draw_pooled(logits, k, u.permute(0, 3, 1, 2), out, scratch, flags)


class ConvGibbsSampler(ChainStates, Clamping):
    """n persistent block-Gibbs chains of a `ConvRBM` on an H×W torus (`size`).

    State (model's device): visible [n, C, H, W] (the last sample, standardised units), mean
    [n, C, H, W] (E[v | h] of the last half-step), hidden [n, K, H, W] (the last hidden draw).
    `clamp_mask` (bool) and `clamp_values` have the visible state's shape; masks and values
    may be given flat ([V] or [n, V], V = C·H·W, as the dream brush hands them) or shaped."""

    def __init__(self, model: ConvRBM, n_chains: int = 1, k: int = 1, temperature: float = 1.0, seed: int | None = None,
                 size: tuple[int, int] | None = None, generator: torch.Generator | None = None):
        if type(n_chains) is not int or n_chains < 1:
            raise ConvRBMError(f"n_chains must be a whole number of at least 1 (got {n_chains!r})")
        self.model = model
        self.k = int(k)
        self.temperature = float(temperature)
        self.generator = generator or make_generator(model.device, seed)
        self.noise = NoiseSource(self.generator)
        # The weights sit still between calls (a viewer's dreams): on a CPU the sweeps take
        # `_FastSweeps` (bfloat16 where the CPU has it; `fast = False` turns that off).
        # A trainer's chains, whose weights change every step, set `free_running` False.
        self.free_running = True
        self.fast = True
        self._fast_sweeps: _FastSweeps | None = None
        self.clamp_mask: Tensor | None = None
        self.clamp_values: Tensor | None = None
        self.steps_taken = 0
        # Sweeps annealed from `DEFAULT_ANNEAL` down to `temperature` after each reset from noise
        # (0: none), as `synthesize` does: a viewer's texture then forms everywhere at once
        # instead of sitting in the flat grey that chains started at T = 1 can keep.
        self.warm_up = 0
        self._warm_left = 0
        # Every `cycle` sweeps the warm-up runs again from the chains' current state (0: never),
        # annealed from `cycle_from` (gentler than from noise): the Dreams tab's texture, which
        # sweeps on and on. A model trained on short runs (`ConvRBMTrainConfig.short_run`: what
        # 40 sweeps from noise make) drifts past them: gravel (bench/texture.py's tiles, 256²
        # chain) ×floor 2.9 after 40 sweeps, 4.3, 5.8, 6.4, 10.8 after 80-200, 9.9 after 320;
        # warmed again every 40 sweeps from T = 2 it ends each cycle at 2.2-3.2 but dissolves
        # in between (×29 five sweeps in: the dream would flash to noise); from T = 1.25 it
        # stays within 2.8-6.1 at every sweep of 160.
        self.cycle = 0
        self.cycle_from = CYCLE_ANNEAL
        self._since_warm = 0
        self._warm_from = DEFAULT_ANNEAL
        if size is None:  # the training images' size, rounded up to whole pooling blocks
            size = tuple(int(s) + (-int(s)) % model.pooling for s in model.config.image_shape[1:])
        self.height, self.width = self._checked_size(*size, n=n_chains)
        self.reset(n_chains)

    # ------------------------------------------------------------------------------ state
    @property
    def n_chains(self) -> int:
        return self.visible.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.model.channels, self.height, self.width

    def _checked_size(self, height: int, width: int, n: int = 1) -> tuple[int, int]:
        """(height, width) when n chains of that size can be run, else ConvRBMError."""
        m = self.model
        h, w = _side("height", height, m), _side("width", width, m)
        need = n * h * w * (20 * m.n_filters + 24 * m.channels)  # bytes: the hidden maps' buffers, the images'
        if need > MAX_SAMPLER_BYTES:
            raise ConvRBMError(f"{n} chain(s) of {w}×{h} px with {m.n_filters} filters would take {need / 2**30:.0f} GiB "
                               f"(at most {MAX_SAMPLER_BYTES / 2**30:.0f}): fewer chains or a smaller size")
        return h, w

    def _as_visible(self, start: Tensor, n: int) -> Tensor:
        """Seed images (uint8 [N, C, h, w] or float in [0, 1]) as n chains' visible states."""
        m = self.model
        if not isinstance(start, Tensor) or start.dim() != 4 or start.shape[1] != m.channels or start.shape[0] < 1:
            raise ConvRBMError(f"a seed must be images [N, {m.channels}, H, W] (got "
                               f"{tuple(start.shape) if isinstance(start, Tensor) else type(start).__name__})")
        if start.dtype != torch.uint8 and not bool(torch.isfinite(start).all()):
            raise ConvRBMError("the seed images hold values that are not finite numbers")
        if start.shape[0] != n:
            start = start[torch.arange(n) % start.shape[0]]
        return m.images_to_visible(seed_to_size(start, self.height, self.width)).contiguous()

    @torch.no_grad()
    def reset(self, n_chains: int | None = None, start: Tensor | None = None, size: tuple[int, int] | None = None,
              visible: Tensor | None = None) -> "ConvGibbsSampler":
        """Restart the chains: from `start`, seed images (uint8 [N, C, h, w] or float in [0, 1]:
        tiled or centre-cropped to the size; the first n of them, repeated when fewer), from
        `visible` (states [n, C, H, W] in the model's units), or from noise (draws of the
        visible biases). `size` (H, W) changes the torus; a change of size or of the number of
        chains drops the clamp."""
        n = n_chains if n_chains is not None else (self.n_chains if hasattr(self, "visible") else 1)
        if type(n) is not int or n < 1:
            raise ConvRBMError(f"n_chains must be a whole number of at least 1 (got {n!r})")
        self.height, self.width = self._checked_size(*(size or (self.height, self.width)), n=n)
        m = self.model
        if visible is not None:
            v = visible.to(m.device, torch.float32).reshape(-1, m.channels, self.height, self.width).clone()
        elif start is not None:
            v = self._as_visible(start, n)
        else:
            v = m.initial_visible(n, self.height, self.width, generator=self.generator)
        self.visible = v
        self.mean = v.clone()
        self.hidden = torch.zeros(v.shape[0], m.n_filters, self.height, self.width, device=v.device)
        if self.clamp_mask is not None and self.clamp_mask.shape != v.shape:
            self.unclamp()
        self._apply_clamp()
        self.steps_taken = 0
        self._warm_left = self.warm_up if visible is None and start is None else 0
        self._since_warm, self._warm_from = 0, DEFAULT_ANNEAL
        return self

    # ----------------------------------------------------------------------------- clamping
    def _shaped(self, t: Tensor, dtype) -> Tensor:
        t = t.to(self.model.device, dtype)
        shape = self.visible.shape
        per_chain = shape[1] * shape[2] * shape[3]
        if t.numel() % per_chain or t.numel() // per_chain not in (1, shape[0]):
            raise ConvRBMError(f"a clamp of {t.numel():,} values does not fit {shape[0]} chain(s) of "
                               f"{shape[1]}×{shape[2]}×{shape[3]} units")
        return t.reshape(-1, *shape[1:]).expand(shape).clone()

    @torch.no_grad()
    def clamp(self, mask: Tensor, values: Tensor | None = None) -> None:
        """Fix the visible units where `mask` is True (per chain or for all; flat or shaped) to
        `values` (the chains' current states when None; the model's units). The rest resample."""
        self.clamp_mask = self._shaped(mask, torch.bool)
        self.clamp_values = self._shaped(self.visible if values is None else values, torch.float32)
        self._apply_clamp()

    # ------------------------------------------------------------------------------ moving
    @torch.no_grad()
    def step(self, k: int | None = None) -> "ConvGibbsSampler":
        """Advance every chain k block-Gibbs sweeps (v -> h -> v) at `temperature`, keeping
        clamped units fixed."""
        k = self.k if k is None else int(k)
        for _ in range(k):
            t = self.temperature
            if self.cycle > 0 and self.warm_up > 0:
                if self._since_warm >= self.cycle:
                    self._warm_left, self._since_warm, self._warm_from = self.warm_up, 0, self.cycle_from
                self._since_warm += 1
            if self._warm_left > 0:  # the warm-up after a reset from noise (`warm_up`)
                t = max(t, annealed(self._warm_from, t, self.warm_up - self._warm_left, self.warm_up))
                self._warm_left -= 1
            self._sweep(t)
        return self

    __call__ = step

    def _fast(self) -> _FastSweeps | None:
        """The fast sweeps (`_FastSweeps`) when they apply: free-running chains on a CPU, a
        torus at least as large as the filter."""
        m = self.model
        if not (self.free_running and self.fast and min(self.height, self.width) >= m.filter_size
                and self.visible.device.type == "cpu"):
            return None
        if self._fast_sweeps is None:
            self._fast_sweeps = _FastSweeps(m)
        return self._fast_sweeps

    def _sweep(self, t: float) -> None:
        m = self.model
        fast = self._fast()
        if fast is not None:
            self.hidden, self.mean, self.visible = fast.sweep(self.visible, t, self.noise, self.generator)
        else:
            g = self.noise if (self.visible.device.type == "cpu" and m.pooling == 1) else self.generator
            _, self.hidden = m.sample_hidden(self.visible, t, g)
            self.mean, self.visible = m.sample_visible(self.hidden, t, self.generator)
        self._apply_clamp()
        self.steps_taken += 1

    @torch.no_grad()
    def anneal(self, steps: int, start: float = 2.0, end: float | None = None) -> "ConvGibbsSampler":
        """`steps` sweeps with the temperature falling geometrically from `start` to `end`
        (default: `temperature`), which lets the chains cross between arrangements early on."""
        end = self.temperature if end is None else float(end)
        steps = int(steps)
        for i in range(steps):
            self._sweep(annealed(start, end, i, steps))
        return self

    @torch.no_grad()
    def run(self, steps: int, anneal_from: float | None = None) -> "ConvGibbsSampler":
        """`steps` sweeps as `synthesize` makes a texture: the first half annealed from
        `anneal_from` (default `DEFAULT_ANNEAL`) down to `temperature`, unless it is not above
        it, the rest at `temperature`. The texture trainer's short runs are this too."""
        steps = int(steps)
        start = DEFAULT_ANNEAL if anneal_from is None else float(anneal_from)
        if start > self.temperature:
            self.anneal(steps // 2, start=start)
            steps -= steps // 2
        return self.step(steps)

    # ------------------------------------------------------------------------------ reading
    # ------------------------------------------------------------------------ persistence
    def state_tensors(self) -> dict[str, Tensor]:
        out = {"visible": self.visible, "mean": self.mean, "hidden": self.hidden.float().contiguous(), "rng": self.generator.get_state(),
               "noise": self.noise.state_tensor()}
        if self.clamp_mask is not None:
            out["clamp_mask"] = self.clamp_mask.to(torch.uint8)
            out["clamp_values"] = self.clamp_values
        return out

    def load_state_tensors(self, state: dict[str, Tensor]) -> None:
        """Chains from `state_tensors` (shapes checked: ConvRBMError when they do not fit)."""
        m, dev = self.model, self.model.device
        v = state["visible"]
        if v.dim() != 4 or v.shape[1] != m.channels or v.shape[0] < 1:
            raise ConvRBMError(f"saved chains of shape {list(v.shape)} do not fit a model of {m.channels} channel(s)")
        n, _, h, w = v.shape
        self.height, self.width = self._checked_size(int(h), int(w), n=int(n))
        want = {"visible": (n, m.channels, h, w), "mean": (n, m.channels, h, w), "hidden": (n, m.n_filters, h, w),
                "clamp_mask": (n, m.channels, h, w), "clamp_values": (n, m.channels, h, w)}
        for name, shape in want.items():
            if name in state and tuple(state[name].shape) != shape:
                raise ConvRBMError(f"the saved chains' {name.replace('_', ' ')} has shape {list(state[name].shape)}, "
                                   f"not {list(shape)}")
        self._warm_left = 0
        self.visible = v.to(dev, torch.float32, copy=True)
        self.mean = state["mean"].to(dev, torch.float32, copy=True)
        self.hidden = state["hidden"].to(dev, torch.float32, copy=True)
        if "rng" in state:
            self.generator.set_state(state["rng"].to(torch.uint8).cpu())
        if "noise" in state and state["noise"].numel():
            self.noise.load_state_tensor(state["noise"])
        else:
            self.noise.reseed()
        if "clamp_mask" in state:
            self.clamp_mask = state["clamp_mask"].to(dev, torch.bool)
            self.clamp_values = state["clamp_values"].to(dev, torch.float32, copy=True)
        else:
            self.unclamp()


#: The sizes the studio and `harmonium sample` draw textures at (px a side): the issue's range; the
#: sampler itself runs from the filter's size up to `MAX_SIDE`, within `MAX_SAMPLER_BYTES`.
MIN_TEXTURE_SIDE, MAX_TEXTURE_SIDE = 64, 2048
DEFAULT_SWEEPS = 40  # sweeps of `synthesize` (see bench/texture.py)
DEFAULT_ANNEAL = 2.0  # `synthesize` anneals from this temperature over its first half


def annealed(start: float, end: float, i: int, n: int) -> float:
    """The i-th (from 0) of n temperatures falling geometrically from `start` to `end`."""
    return start * (end / start) ** (i / max(1, n - 1))
CYCLE_ANNEAL = 1.25  # a cycling sampler's warm-ups after the first start here (`ConvGibbsSampler.cycle`)


@torch.no_grad()
def synthesize(model: ConvRBM, height: int, width: int, *, n: int = 1, steps: int = DEFAULT_SWEEPS, seed: int | None = None,
               start: Tensor | None = None, temperature: float = 1.0, anneal_from: float | None = None,
               mask: Tensor | None = None, values: Tensor | None = None, show: Literal["probs", "samples"] = "probs") -> Tensor:
    """n seamless textures of height × width px as images [n, C, H, W] in [0, 1] on the CPU.

    `steps` sweeps from noise (or from the seed images `start`), the first half annealed from
    `anneal_from` down to `temperature`. None: from `DEFAULT_ANNEAL` when starting from noise
    (a hot start lets the texture's structure form everywhere at once: from noise at T = 1 a
    brick model's chains kept a flat grey for 40 sweeps, patch MMD² 0.12; annealed from T = 2,
    0.009), not at all from a seed (it would melt it); a number ≤ `temperature`: no annealing.
    `mask` / `values` (images [n, C, H, W] in [0, 1], or uint8) clamp pixels as the dream brush
    does (inpainting). E[v | h] is shown ("probs"), or the sampled pixels ("samples")."""
    model.eval()
    s = ConvGibbsSampler(model, n_chains=n, temperature=temperature, seed=seed, size=(height, width))
    if start is not None:
        s.reset(n, start=start)
    if mask is not None:
        vals = None
        if values is not None:
            vals = model.images_to_visible(seed_to_size(values if values.dim() == 4 else values[None], height, width))
        s.clamp(mask, vals)
    if anneal_from is None:
        anneal_from = DEFAULT_ANNEAL if start is None else temperature
    s.run(steps, anneal_from)
    return s.images(show)


def seam_ratio(images: Tensor) -> float:
    """How visible the wrap-around seam of tiled images is: the mean absolute difference
    between the last and first column (and row), over the same between neighbouring interior
    columns (and rows). About 1 for a seamless tile; well above 1 when tiling shows a seam."""
    x = images.float()
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    sx = (x[..., :, 0] - x[..., :, -1]).abs().mean()
    sy = (x[..., 0, :] - x[..., -1, :]).abs().mean()
    return float((sx + sy) / (dx + dy).clamp_min(1e-12))
