"""Persistent Gibbs chains over an RBM: the model's dreams.

`GibbsSampler` holds n chains of visible states and moves them k Gibbs steps per call, at a
temperature, optionally with a clamp mask that fixes chosen visible units (inpainting: the
clamped units keep their values, the others resample given them). The same object is the
negative phase of PCD training (Tieleman 2008), so a viewer that shows the chains while a
model trains costs nothing extra: the chains are computed for the gradient anyway.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import torch
from torch import Tensor

from . import calibrate
from .device import make_generator
from .kernels import PackedRBM, onednn_available
from .noise import NoiseSource, to_uniform
from .rbm import BernoulliRBM


# Chains per noise stream: what a seed means (chain i draws from stream i // 32 whatever the
# machine), so not a speed setting. Groups are also the unit of parallel work on the CPU;
# whether they go to worker threads at all is decided from the machine's calibration.
CHAIN_GROUP = 32
#: the products a sampler's step may use on the CPU (see `models.calibrate.PATHS`)
SAMPLER_PATHS = ("addmm", "fused", "packed", "packed_bf16")

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _one_torch_thread(barrier: threading.Barrier, default: list[int]) -> None:
    default.append(torch.get_num_threads())  # a new thread starts from torch's process default
    torch.set_num_threads(1)  # this thread's ops (and its BLAS calls) run on one core
    barrier.wait()


def chain_workers(n: int) -> ThreadPoolExecutor:
    """A pool of at least `n` threads whose torch ops each run on one core: groups of chains
    step there side by side, each on its own core, with no fork/join inside every small op and
    no cache lines moving between cores (each group's tensors stay with the core that wrote them)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers < n:
            barrier, default = threading.Barrier(n + 1), []
            pool = ThreadPoolExecutor(n, thread_name_prefix="gibbs")
            for _ in range(n):  # start every worker now and set each to one thread
                pool.submit(_one_torch_thread, barrier, default)
            barrier.wait()
            # torch.set_num_threads also changes the default that threads started later take;
            # put it back from a throwaway thread, which leaves every live thread's setting alone.
            t = threading.Thread(target=torch.set_num_threads, args=(max(default),))
            t.start()
            t.join()
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL = pool
        return _POOL


def run_groups(groups: list, work) -> None:
    """Call `work(part)` on the groups, split into up to torch.get_num_threads() parts that run
    side by side in `chain_workers` (each with torch on one core), or on all of them here when
    one part is all there is. The groups must not depend on each other."""
    workers = min(len(groups), torch.get_num_threads())
    if workers <= 1:
        work(groups)
        return
    pool = chain_workers(workers)
    futures = [pool.submit(work, groups[i::workers]) for i in range(workers)]
    for f in futures:
        f.result()


class ChainStates:
    """Reading the chains of the samplers that keep `visible` (the sampled states) and `mean`
    (E[v | h]) of a `model` with `visible_to_images`: the pixel RBMs' and the texture RBM's."""

    def states(self, kind: Literal["probs", "samples"] = "probs") -> Tensor:
        """The chains' visible units: E[v | h] ("probs") or the sampled states ([n, V] for a
        pixel RBM, [n, C, H, W] for the texture RBM)."""
        return self.mean if kind == "probs" else self.visible

    @torch.no_grad()
    def images(self, kind: Literal["probs", "samples"] = "probs") -> Tensor:
        """The chains as images [n, C, H, W] in [0, 1], on the CPU."""
        return self.model.visible_to_images(self.states(kind)).detach().cpu()


class Clamping:
    """The dream brush's clamp, shared by the samplers that keep `visible` and `mean` chain
    states: where `clamp_mask` is True the units hold `clamp_values`, the rest resample."""

    clamp_mask: Tensor | None = None
    clamp_values: Tensor | None = None

    def unclamp(self) -> None:
        self.clamp_mask = None
        self.clamp_values = None

    def _apply_clamp(self) -> None:
        if self.clamp_mask is not None:
            self.visible = torch.where(self.clamp_mask, self.clamp_values, self.visible)
            self.mean = torch.where(self.clamp_mask, self.clamp_values, self.mean)


class GibbsSampler(ChainStates, Clamping):
    """n persistent Gibbs chains over `model` (a `BernoulliRBM` or `GaussianBernoulliRBM`).

    State, all on the model's device:
        visible  [n, V]  the current sample of the visible units
        mean     [n, V]  E[v | h] of the last half-step (probabilities for binary units)
        hidden   [n, H]  the last hidden sample

    Binary RBMs on the CPU step their chains in groups of `CHAIN_GROUP`, each group with its own
    noise stream, the groups side by side on up to torch.get_num_threads() cores. A seed fixes
    every chain whatever the number of cores.
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
        # The weights sit still between calls (a viewer's dreams): on the CPU they are kept
        # packed for oneDNN, and chain groups step side by side on the cores. A trainer's
        # chains, whose weights change every step, set this False.
        self.free_running = True
        self._packed: PackedRBM | None = None
        self._noises: list[NoiseSource] = [NoiseSource(self.generator)]  # one per chain group
        self.clamp_mask: Tensor | None = None  # bool [n, V]: True = fixed
        self.clamp_values: Tensor | None = None  # [n, V]
        self.steps_taken = 0
        self.reset(n_chains)

    # ------------------------------------------------------------------------------ state
    @property
    def n_chains(self) -> int:
        return self.visible.shape[0]

    @property
    def noise(self) -> NoiseSource:
        """The first group's noise stream (CD training draws its hidden samples from it)."""
        return self._noises[0]

    def groups(self) -> list[tuple[int, int, NoiseSource]]:
        """(first chain, end, noise stream) of each chain group; a single group off the CPU,
        where one big call is fastest."""
        n = self.n_chains
        if self.visible.device.type != "cpu":
            return [(0, n, self._noises[0])]
        bounds = [(a, min(a + CHAIN_GROUP, n)) for a in range(0, n, CHAIN_GROUP)]
        while len(self._noises) < len(bounds):
            self._noises.append(NoiseSource(self.generator, stream=len(self._noises)))
        return [(a, b, self._noises[i]) for i, (a, b) in enumerate(bounds)]

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

    # ------------------------------------------------------------------------------ moving
    def step(self, k: int | None = None) -> "GibbsSampler":
        """Advance every chain k Gibbs steps (v -> h -> v), keeping clamped units fixed."""
        k = self.k if k is None else int(k)
        if type(self.model) is BernoulliRBM:
            self._bernoulli_steps(k)
        else:
            model, t, g = self.model, self.temperature, self.generator
            with torch.no_grad():
                for _ in range(k):
                    _, self.hidden = model.sample_hidden(self.visible, t, g)
                    self.mean, self.visible = model.sample_visible(self.hidden, t, g)
                    self._apply_clamp()
        self.steps_taken += k
        return self

    def _bernoulli_steps(self, k: int) -> None:
        """`k` steps for a binary RBM, with fewer allocations and passes over memory than the
        generic model calls but the same draws in the same order as `model.sample_hidden` /
        `model.sample_visible` given each group's noise stream, so the chains are theirs.

        On the CPU the products take the path the machine's calibration finds fastest at this
        size (`_plan`): free-running chains may use weights packed for oneDNN (`PackedRBM`, in
        float32 or bfloat16) and, with more than one thread and enough work per call, step each
        chain group on its own core: their weights sit still, and every core reads them. A
        trainer's chains (weights that change every step) step all together in the calling
        thread, whose own BLAS threads split the work best.

        The new state always goes into new tensors: what a viewer holds of the previous one (a
        frame, a view, a numpy array) is never written over, in any thread. (Writing over the
        previous state when nothing else held it was measured at 1-3 % of a step, and telling
        "nothing else holds it" took sys.getrefcount and a private torch count: not worth it.)"""
        groups, parallel, packed, sc = self._setup(k)
        if sc is not None and packed is not None:  # a viewer's calls: every group here, over packed weights
            self.hidden, self.mean, self.visible = sc.steps(k, self.visible, groups, packed.hidden_probs, packed.visible_probs,
                                                            self.clamp_mask, self.clamp_values)
            return
        if torch.is_grad_enabled():
            # the model's own products (or worker threads): no autograd graph. Packed weights
            # are detached copies, so the viewer's path above skips the context's few µs per call.
            with torch.no_grad():
                return self._bernoulli_steps(k)
        n, V, H = self.visible.shape[0], self.model.n_visible, self.model.n_hidden
        dev = self.visible.device
        out_h = torch.empty(n, H, device=dev)
        out_mean = torch.empty(n, V, device=dev)
        out_v = torch.empty(n, V, device=dev)

        def run(part: list[tuple[int, int, NoiseSource]]) -> None:
            with torch.no_grad():
                for group in part:
                    self._rows_steps(k, [group], out_h, out_mean, out_v, packed)

        if parallel:
            run_groups(groups, run)
        else:
            self._rows_steps(k, groups, out_h, out_mean, out_v, packed, sc)
        self.hidden, self.mean, self.visible = out_h, out_mean, out_v

    _last_setup: tuple | None = None

    def _setup(self, k: int) -> tuple[list, bool, PackedRBM | None, "_Scratch | None"]:
        """(the chain groups, whether they step on worker threads, the packed model or None,
        the scratch of a call that steps them all here) for a call of k steps: worked out from
        the groups, the plan and the packing, and remembered until any of what they depend on
        changes (the number of chains, the streams, the calibration, the threads, the
        temperature, the weights; the environment's precision setting is read when they are
        worked out). A viewer's one-step calls find it again every frame for a few cheap
        comparisons, not a few µs of Python each."""
        key = self._setup_key(k)
        last = self._last_setup
        if last is not None and last[0] == key:
            return last[2]
        m = self.model
        calibrate.calibration()  # (measures the machine now if it has no table for these threads)
        groups = self.groups()
        n, V, H = self.n_chains, m.n_visible, m.n_hidden
        cpu = self.visible.device.type == "cpu"
        path, parallel = self._plan(k, len(groups)) if cpu else ("addmm", False)
        rows = min(n, CHAIN_GROUP) if parallel else n  # rows of each matrix product
        packed = self._packed_model(torch.bfloat16 if path == "packed_bf16" else torch.float32, rows) if path.startswith("packed") else None
        sc = None
        if cpu and not parallel and groups[0][2]._bits is not None:
            dt = packed.dtype if packed is not None else torch.float32
            if _Scratch.kept(n, H, V):  # (larger ones: each call makes its own)
                sc = self._scratch(0, n, H, V, dt, tuple(j - i for i, j, _ in groups))
        setup = (groups, parallel, packed, sc)
        # the objects whose ids the key holds stay referenced, so that no id is reused
        params = m._parameters
        self._last_setup = (self._setup_key(k), (self._noises, params["weight"], params["visible_bias"], params["hidden_bias"]), setup)
        return setup

    def _setup_key(self, k: int) -> tuple:
        """What a call's setup depends on, in a few cheap reads."""
        params = self.model._parameters
        w, b, c = params["weight"], params["visible_bias"], params["hidden_bias"]
        v = self.visible
        return (k, v.shape[0], v.is_cpu, id(self._noises), len(self._noises), calibrate.generation(), torch.get_num_threads(),
                self.free_running, self.temperature, id(w), id(b), id(c), w.data_ptr(), b.data_ptr(), c.data_ptr(),
                w._version + b._version + c._version)  # (versions only grow: their sum changes with any of them)

    def _plan(self, k: int, n_groups: int) -> tuple[str, bool]:
        """(the product path, whether chain groups step side by side on worker threads) for a
        call of k steps, from the machine's calibration: the path with the least measured time
        at this size (packed weights only for free-running chains, whose weights sit still),
        and the worker threads when one group's k steps take longer than handing them over.
        Remembered for the last (calibration, sizes, k, threads) asked: a viewer's one-step
        calls ask the same again and again."""
        n, V, H = self.n_chains, self.model.n_visible, self.model.n_hidden
        cal = calibrate.calibration()
        threads = torch.get_num_threads()
        key = (k, n_groups, n, V, H, threads, self.free_running, calibrate.bf16_allowed())
        last = self.__dict__.get("_last_plan")
        if last is not None and last[0] is cal and last[1] == key:
            return last[2]
        plan = self._plan_for(cal, k, n_groups, threads)
        self._last_plan = (cal, key, plan)
        return plan

    def _plan_for(self, cal: calibrate.Calibration, k: int, n_groups: int, threads: int) -> tuple[str, bool]:
        n, V, H = self.n_chains, self.model.n_visible, self.model.n_hidden
        paths = SAMPLER_PATHS if self.free_running else ("addmm", "fused")
        parallel = False
        if self.free_running and n_groups > 1 and threads > 1:
            g = min(n, CHAIN_GROUP)
            gpath = cal.fastest(paths, g * V * H)
            rounds = -(-n_groups // min(n_groups, threads))  # groups per worker
            serial = 2 * k * cal.time(cal.fastest(paths, n * V * H), n * V * H)
            parallel = 2 * k * rounds * cal.time(gpath, g * V * H) + cal.handoff < serial
            if parallel:
                return gpath, True
        return cal.fastest(paths, n * V * H), False

    def _packed_model(self, dtype: torch.dtype = torch.float32, rows: int = 64) -> PackedRBM | None:
        """The model packed for oneDNN at this temperature and dtype (packed again if the
        weights changed)."""
        if not onednn_available():
            return None
        if self._packed is None or self._packed.key != PackedRBM.key_of(self.model, self.temperature, dtype):
            self._packed = PackedRBM(self.model, self.temperature, dtype, rows)
        return self._packed

    def _rows_steps(self, k: int, groups: list[tuple[int, int, NoiseSource]], out_h: Tensor, out_mean: Tensor, out_v: Tensor,
                    packed: PackedRBM | None = None, sc: "_Scratch | None" = None) -> None:
        """k Gibbs steps of the chains of consecutive `groups` (rows a..b in all), each group
        drawing from its own stream; the last step writes rows a..b of the out_* tensors.

        Each half-step is its product and, on the CPU, a few passes over memory with no
        temporaries (`_Scratch`): the step's uniforms of every group into one float32 buffer
        laid out row for row as the chains (one call into each stream for both halves, one
        scaling for all), bfloat16 probabilities copied to float32, one comparison over every
        group, and for bfloat16 products the sample converted to their input. A few buffers reused from
        call to call: the weights (a megabyte for 1,024×256 in both layouts) stay in the
        core's cache, where fresh temporaries evicted them; and little Python per call, which
        a viewer's one-step calls pay every frame."""
        m, t = self.model, self.temperature
        a, b = groups[0][0], groups[-1][1]
        whole = a == 0 and b == self.n_chains
        if not whole:
            out_h, out_mean, out_v = out_h[a:b], out_mean[a:b], out_v[a:b]
        mask = vals = None
        if self.clamp_mask is not None:
            mask, vals = (self.clamp_mask, self.clamp_values) if whole else (self.clamp_mask[a:b], self.clamp_values[a:b])
        v = self.visible if whole else self.visible[a:b]  # [g, V]
        if groups[0][2]._bits is None:  # noise from torch's generator (CUDA, MPS): the generic draws
            self._device_steps(k, groups[0][2], v, out_h, out_mean, out_v, mask, vals)
            return
        # the products' dtype: binary states are exact in bfloat16; the probabilities are
        # compared as float32 (exactly the values the products gave)
        dt = packed.dtype if packed is not None else torch.float32
        if packed is None:
            hidden_probs, visible_mean = (lambda x: m.hidden_probs(x, t)), (lambda x: m.visible_mean(x, t))
        else:
            hidden_probs, visible_mean = packed.hidden_probs, packed.visible_probs
        if sc is None:
            sc = self._scratch(a, b, m.n_hidden, m.n_visible, dt, tuple(j - i for i, j, _ in groups))
        sc.steps(k, v, groups, hidden_probs, visible_mean, mask, vals, (out_h, out_mean, out_v))

    def _device_steps(self, k: int, noise: NoiseSource, v: Tensor, out_h: Tensor, out_mean: Tensor, out_v: Tensor,
                      mask: Tensor | None, vals: Tensor | None) -> None:
        """k steps of one group whose noise comes from torch's generator (off the CPU)."""
        m, t = self.model, self.temperature
        for step in range(k):
            last = step == k - 1
            h = noise.bernoulli(m.hidden_probs(v, t), out_h if last else None)
            mean = m.visible_mean(h, t)
            v = noise.bernoulli(mean, out_v if last else None)
            if mask is not None:
                v = torch.where(mask, vals, v)
        out_mean.copy_(mean)
        if mask is not None:
            out_v.copy_(v)
            out_mean.copy_(torch.where(mask, vals, mean))

    def _scratch(self, a: int, b: int, H: int, V: int, dt: torch.dtype, sizes: tuple[int, ...]) -> "_Scratch":
        """The buffers of rows a..b's steps, chain groups of `sizes` rows (one set per chain
        group stepping in a worker), kept for the next call while they are small
        (`_Scratch.kept`); larger ones are made for the call and dropped."""
        key = (a, b, H, V, dt, self.visible.device, sizes, self.n_chains)
        cache = self.__dict__.setdefault("_scratches", {})
        sc = cache.get(key)
        if sc is None:
            sc = _Scratch(sizes, H, V, dt, self.visible.device)
            if any(k[-1] != self.n_chains or k[2:4] != (H, V) for k in list(cache)):  # (workers add theirs meanwhile)
                cache.clear()  # another number of chains (or model) now: the old buffers go
            if _Scratch.kept(self.n_chains, H, V):
                cache[key] = sc
        return sc

    __call__ = step

    # ------------------------------------------------------------------------ persistence
    def state_tensors(self) -> dict[str, Tensor]:
        out = {
            "visible": self.visible,
            "mean": self.mean,
            "hidden": self.hidden,
            "rng": self.generator.get_state(),
            "noise": torch.stack([ns.state_tensor() for ns in self._noises]),
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
        saved = state["noise"].reshape(-1, 6) if "noise" in state and state["noise"].numel() else None
        self._noises = self._noises[:1]
        self.groups()  # a stream for each group of the loaded chains
        for i, ns in enumerate(self._noises):
            if saved is not None and i < saved.shape[0]:
                ns.load_state_tensor(saved[i])
            else:  # a checkpoint from before the noise streams: restart them from the seed
                ns.reseed()
        if "clamp_mask" in state:
            self.clamp_mask = state["clamp_mask"].to(dev, torch.bool)
            self.clamp_values = state["clamp_values"].to(dev, torch.float32, copy=True)
        else:
            self.unclamp()


class _Scratch:
    """Reused buffers of one block of chains' Gibbs steps, whose chain groups have `sizes` rows:
    the uniforms of a step (`u_h` [g, H] and `u_v` [g, V], row for row the chains': each group's
    stream draws its hidden half then its visible half in one call, copied to its rows of each),
    the samples before the last step's (`h`, `v`), and for bfloat16 products the inputs converted
    (`h_in`, `x_v`). CPU only."""

    def __init__(self, sizes: tuple[int, ...], H: int, V: int, dt: torch.dtype, device: torch.device):
        new = lambda *shape, dtype=torch.float32: torch.empty(*shape, device=device, dtype=dtype)  # noqa: E731
        self.g = g = sum(sizes)
        self.H, self.V = H, V
        self.u = new(g * (H + V))
        self.u_h, self.u_v = self.u[: g * H].view(g, H), self.u[g * H :].view(g, V)
        self.h, self.v = new(g, H), new(g, V)
        self.bf16 = dt != torch.float32
        self.h_in, self.x_v = (new(g, H, dtype=dt), new(g, V, dtype=dt)) if self.bf16 else (None, None)
        # each group's draw: (64-bit words, where its hidden uniforms go, how many, where its
        # visible ones start in the draw (a half that leaves its last word part used skips the
        # rest, as `NoiseSource.uniforms16` does), where they go, how many); numpy views of u
        flat_h, flat_v = self.u_h.numpy().reshape(-1), self.u_v.numpy().reshape(-1)
        self.parts, r = [], 0
        for s in sizes:
            wh, wv = (s * H + 3) >> 2, (s * V + 3) >> 2
            self.parts.append((wh + wv, flat_h[r * H : (r + s) * H], s * H, 4 * wh, flat_v[r * V : (r + s) * V], s * V))
            r += s

    def steps(self, k: int, v: Tensor, groups: list[tuple[int, int, NoiseSource]], hidden_probs, visible_mean,
              mask: Tensor | None = None, vals: Tensor | None = None,
              out: tuple[Tensor, Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """k Gibbs steps of these chains from the visible states `v` [g, V] (float32); the last
        step's hidden sample [g, H], E[v | h] and visible sample [g, V] (float32) go into `out`,
        or into new tensors (a viewer may still hold the previous ones), which are returned.
        `mask`, `vals`: clamped units and their values, or None.

        Each draw is [u < p] into a float32 tensor, bfloat16 probabilities copied there first
        (exact; comparing bfloat16 with float32 in one op takes three times as long)."""
        bf16, draw, lt, u_h, u_v = self.bf16, self.draw, torch.lt, self.u_h, self.u_v
        x = self.x_v.copy_(v) if bf16 else v  # the visible input of the next product
        for _ in range(k - 1):
            draw(groups)  # this step's uniforms
            p = hidden_probs(x)
            h = lt(u_h, self.h.copy_(p) if bf16 else p, out=self.h)  # h ~ p(h | v), 0/1 float32
            p = visible_mean(self.h_in.copy_(h) if bf16 else h)
            v = lt(u_v, self.v.copy_(p) if bf16 else p, out=self.v)  # v ~ E[v | h]
            if mask is not None:
                torch.where(mask, vals, v, out=v)
            x = self.x_v.copy_(v) if bf16 else v
        draw(groups)
        if out is None:
            empty = torch.empty  # (on the CPU)
            out = empty(self.g, self.H), empty(self.g, self.V), empty(self.g, self.V)
        out_h, out_mean, out_v = out
        p = hidden_probs(x)
        lt(u_h, out_h.copy_(p) if bf16 else p, out=out_h)
        out_mean.copy_(visible_mean(self.h_in.copy_(out_h) if bf16 else out_h))  # E[v | h]
        lt(u_v, out_mean, out=out_v)
        if mask is not None:
            torch.where(mask, vals, out_v, out=out_v)
            torch.where(mask, vals, out_mean, out=out_mean)
        return out

    @staticmethod
    def kept(n: int, H: int, V: int) -> bool:
        """Whether the buffers of n chains stay between calls: up to 32 MB for all of them (a
        viewer's one-step calls)."""
        return 24 * n * (H + V) <= 32 << 20

    def draw(self, groups: list[tuple[int, int, NoiseSource]]) -> None:
        """A step's uniforms: one call into each group's stream for both halves, copied (as
        float32) to the group's rows of u_h and u_v, then one scaling of them all."""
        for (words, dh, nh, ov, dv, nv), group in zip(self.parts, groups):
            r = group[2].raw16(words)
            dh[...] = r[:nh]
            dv[...] = r[ov : ov + nv]
        to_uniform(self.u, self.u)
