"""Training RBMs by contrastive divergence: CD-k (Hinton 2002) and persistent CD-k
(PCD, Tieleman 2008), with momentum, weight decay, a learning-rate schedule and optional
centering (Melchior, Fischer & Wiskott 2016, "How to center deep Boltzmann machines").

Gradient of the log-likelihood for a binary RBM, with data statistics ⟨·⟩_d and model
statistics ⟨·⟩_m estimated from the negative-phase chains:

    ∂W = ⟨(v - μ)(h - λ)ᵀ⟩_d - ⟨(v - μ)(h - λ)ᵀ⟩_m
    ∂b = ⟨v⟩_d - ⟨v⟩_m - ∂W λ
    ∂c = ⟨h⟩_d - ⟨h⟩_m - ∂Wᵀ μ

with offsets μ = 0, λ = 0 for the plain RBM, and with centering μ = the data mean and λ a
running mean of the hidden activations on data. The parameters stay in the ordinary
(uncentered) form, so sampling and checkpoints need not know about the offsets.

The Gaussian-Bernoulli RBM takes the same estimator through autograd of the free energy
difference F(v_data) - F(v_model), with a floor on σ² (Liao et al. 2022). Its gradients differ
in size by orders of magnitude between W, the biases and log σ² (Cho, Ilin & Raiko 2011 adapt
the learning rate for this reason), so it trains with Adam by default: a step size per
parameter. Plain SGD is available and then clips the gradient norm at 10 (Liao et al.).

PCD's chains can restart from noise in turn (`restart_every`, see `RBMTrainer._restart_chains`:
the chains a sampler of the dreams starts from noise must land where the model was trained),
and a Gaussian RBM's chains can take Gibbs-Langevin steps instead of Gibbs steps
(`sampler="langevin"`, `models.langevin`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from . import calibrate
from .kernels import gram_update
from .rbm import BernoulliRBM, GaussianBernoulliRBM, RBMBase, bernoulli
from .sampling import GibbsSampler
from .tempering import TemperedSampler, base_from_data
from .training import TrainConfig, Trainer, streamed_mean_std

#: The persistent chains' memory a trainer may take (a hostile checkpoint's `n_chains` and
#: `tempering` must not allocate without bound; 100 chains of 64 px RGB take 15 MB).
MAX_CHAIN_BYTES = 4 << 30


@dataclass
class RBMTrainConfig(TrainConfig):
    """Hyperparameters of CD/PCD training, named as in the papers."""

    learning_rate: float = 0.05
    k: int = 1  # Gibbs steps per update (CD-k / PCD-k)
    persistent: bool = True  # PCD (True) or CD (False)
    n_chains: int = 64  # persistent chains (PCD only)
    momentum: float = 0.5  # for the first `momentum_epochs` epochs ...
    final_momentum: float = 0.9  # ... then this (Hinton 2010, §9)
    momentum_epochs: int = 5
    weight_decay: float = 1e-4  # L2 on the weights only
    centering: bool = False
    center_rate: float = 0.01  # sliding factor of the hidden offset λ
    sample_data: bool = False  # binary RBM: train on binary draws of the grey levels, not the levels themselves
    # PCD's chains mixed by parallel tempering with this many replicas (0: plain PCD), tempered
    # toward the data's base rate (models/tempering.py; Desjardins et al. 2010)
    tempering: int = 0
    optimizer: str = "sgd"  # "sgd" (momentum) | "adam" (Gaussian RBM only: per-parameter step sizes)
    # each of PCD's chains restarts from the model's own starting state (noise) once every this
    # many updates, in turn (0: never; 1: all of them every update, short-run chains): see
    # `RBMTrainer._restart_chains`
    restart_every: int = 0
    sampler: str = "gibbs"  # the chains' moves: "gibbs" | "langevin" (Gaussian RBM: models/langevin.py)
    frame_every: int = 10


class RBMTrainer(Trainer):
    """CD-k / PCD-k for `BernoulliRBM` and `GaussianBernoulliRBM`.

    `data`: images uint8 [N, C, H, W] (or float in [0, 1]). `trainer.sampler` holds the
    persistent chains: the dreams a viewer shows while the model trains.
    """

    config: RBMTrainConfig

    def __init__(self, model: RBMBase, data: Tensor, config: RBMTrainConfig | None = None, device=None):
        config = config or RBMTrainConfig()
        if isinstance(model, GaussianBernoulliRBM) and config.grad_clip is None and config.optimizer == "sgd":
            config.grad_clip = 10.0  # plain SGD on a Gaussian RBM: clip the norm as Liao et al. (2022) do
        super().__init__(model, data, config, device)
        self.model: RBMBase
        n_chains = config.n_chains if config.persistent else self.batch_size
        rows = n_chains * (config.tempering if config.persistent and config.tempering > 1 else 1)
        chain_bytes = rows * (model.n_visible + model.n_hidden) * 4 * 3  # states, means, the update's copies
        if chain_bytes > MAX_CHAIN_BYTES:
            raise ValueError(f"{rows:,} chains (chains × replicas) of {model.n_visible + model.n_hidden:,} units would take "
                             f"{chain_bytes / 2**30:.0f} GiB (at most {MAX_CHAIN_BYTES / 2**30:.0f}): fewer chains or replicas")
        if config.sampler not in ("gibbs", "langevin"):
            raise ValueError(f"unknown sampler {config.sampler!r} (gibbs, langevin)")
        if config.sampler == "langevin" and not isinstance(model, GaussianBernoulliRBM):
            raise ValueError("Langevin chains need a Gaussian RBM (sampler='gibbs' for a binary RBM)")
        if config.restart_every < 0:
            raise ValueError(f"restart_every must be 0 (never) or more (got {config.restart_every})")
        if config.restart_every and config.persistent and config.tempering > 1:
            raise ValueError("restart_every restarts plain PCD chains; tempered chains (tempering > 1) keep theirs")
        if config.persistent and config.tempering > 1:
            # the base (the data's base rate) is set at the first update, after `prepare`
            self.sampler = TemperedSampler(model, n_chains=n_chains, k=config.k, seed=self.seed, replicas=config.tempering)
        elif config.sampler == "langevin":
            from .langevin import GibbsLangevinSampler

            self.sampler = GibbsLangevinSampler(model, n_chains=n_chains, k=config.k, seed=self.seed)
        else:
            self.sampler = GibbsSampler(model, n_chains=n_chains, k=config.k, seed=self.seed)
        self.sampler.free_running = False  # the weights change every step: step the chains in this thread
        # the sizes a loaded state must have (`check_state`)
        self._chains, self._replicas = self.sampler.n_chains, getattr(self.sampler, "replicas", 1)
        V, H = model.n_visible, model.n_hidden
        self.visible_offset = torch.zeros(V, device=self.device)  # μ
        self.hidden_offset = torch.full((H,), 0.5, device=self.device) if config.centering else torch.zeros(H, device=self.device)  # λ
        self._last_negative: Tensor | None = None
        self._last_recon = float("nan")
        self._last_gap = float("nan")  # the Gaussian RBM's free-energy gap, as last read back

    def make_optimizer(self) -> torch.optim.Optimizer:
        m = self.model
        groups = [
            {"params": [m.weight], "weight_decay": self.config.weight_decay},
            {"params": [p for n, p in m.named_parameters() if n != "weight"], "weight_decay": 0.0},
        ]
        if self.config.optimizer == "adam":
            if isinstance(m, BernoulliRBM):
                raise ValueError("the binary RBM trains with SGD and momentum (optimizer='sgd')")
            return torch.optim.Adam(groups, lr=self.config.learning_rate, betas=(self.config.momentum, 0.999))
        if self.config.optimizer != "sgd":
            raise ValueError(f"unknown optimizer {self.config.optimizer!r} (sgd, adam)")
        return torch.optim.SGD(groups, lr=self.config.learning_rate, momentum=self.config.momentum)

    # -------------------------------------------------------------------------- preparing
    def prepare(self) -> None:
        model = self.model
        if isinstance(model, GaussianBernoulliRBM):
            mean, std = streamed_mean_std(self.data, lambda x: RBMBase.images_to_visible(model, x))
            model.set_standardisation(mean, std)
            with torch.no_grad():
                model.visible_bias.zero_()  # standardised data have mean 0
        else:
            mean, _ = streamed_mean_std(self.data, model.images_to_visible)
            model.init_visible_bias_from_data(mean)
            if self.config.centering:
                self.visible_offset = mean.to(self.device)
        self.sampler.reset()

    # --------------------------------------------------------------------------- a step
    def _momentum(self) -> float:
        c = self.config
        return c.momentum if self.epoch < c.momentum_epochs else c.final_momentum

    def _negative_phase(self, v0: Tensor, h0: Tensor | None = None) -> Tensor:
        """Visible states of the model's side: the persistent chains (PCD) or k Gibbs steps
        started at the data (CD-k; the last visible half-step as probabilities for binary
        units, Hinton 2010). `h0` = p(h | v0) when already computed."""
        if self.config.persistent:
            if isinstance(self.sampler, TemperedSampler) and self.sampler.base is None:
                # tempered toward the data's base rate (after `prepare` standardised a Gaussian
                # RBM's pixels); a fresh run's chains start from its draws
                self.sampler.set_base(base_from_data(self.model, self.data))
                if self.step == 0:
                    self.sampler.reset()
            if self.config.restart_every:
                self._restart_chains()
            self.sampler.step(self.config.k)
            return self.sampler.visible
        m, g = self.model, self.sampler.generator
        h = bernoulli(h0, g) if h0 is not None else m.sample_hidden(v0, generator=g)[1]
        for i in range(self.config.k):
            if i:
                h = m.sample_hidden(v, generator=g)[1]
            if i == self.config.k - 1 and m.binary_visible:
                return m.visible_mean(h)
            mean, v = m.sample_visible(h, generator=g)
        return v

    @torch.no_grad()
    def _restart_chains(self) -> None:
        """Restart every `restart_every`-th chain (a different share at each update, so each chain
        lives `restart_every` updates and their ages are spread evenly) from the model's own
        starting state, the one a sampler of its dreams starts from.

        Persistent chains follow the model to its data's modes and stay there, while chains
        started from noise can fall into modes the persistent chains never visit, so that the
        gradient never pushes them up: a Gaussian RBM on 40 colour photos (PCD) kept its training
        images in chains started from them (MMD² of E[v | h] 0.052 after 1,000 steps) but chains from noise
        settled within two steps on blends of a few images (0.37). Restarting every chain at
        every update instead (short-run chains, Nijkamp et al. 2019; Liao et al. 2022 start
        theirs from noise at every update) learns where noise goes in k steps and no further:
        on 70 faces its chains scored 0.020 after 5 steps and 0.092 after 1,000."""
        every, n = self.config.restart_every, self.sampler.n_chains
        if self.step == 0:  # a fresh run's chains are all new
            return
        if every == 1:
            self.sampler.reset()
            return
        first = self.step % every
        if first >= n:  # more updates than chains between restarts: none this time
            return
        idx = torch.arange(first, n, every, device=self.sampler.visible.device)
        s = self.sampler
        fresh = self.model.initial_visible(len(idx), generator=s.generator)
        s.visible = s.visible.index_copy(0, idx, fresh)
        s.mean = s.mean.index_copy(0, idx, fresh)
        s.hidden = s.hidden.index_fill(0, idx, 0.0)
        s._apply_clamp()

    def train_step(self, batch: Tensor) -> dict[str, float]:
        for group in self.optimizer.param_groups:
            if "betas" in group:  # Adam: the momentum schedule is its first moment's decay
                group["betas"] = (self._momentum(), group["betas"][1])
            else:
                group["momentum"] = self._momentum()
        m = self.model
        if isinstance(m, BernoulliRBM):
            # the data rows of the stacked [v0; vk] the update works on, converted in place
            B = batch.shape[0]
            vv = torch.empty(B + self._model_rows(B), m.n_visible, device=self.device)
            v0 = m.images_to_visible(batch, out=vv[:B])
            if self.config.sample_data:  # grey levels as probabilities: a fresh binary draw per visit
                self.sampler.noise.bernoulli(v0, v0, torch.empty_like(v0))
            metrics = self._bernoulli_step(v0, vv)
        else:
            metrics = self._gaussian_step(m.images_to_visible(batch))
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        return metrics

    def _buffer(self, p: Tensor) -> Tensor:
        st = self.optimizer.state[p]
        if "momentum_buffer" not in st or st["momentum_buffer"] is None:
            st["momentum_buffer"] = torch.zeros_like(p)
        return st["momentum_buffer"]

    @torch.no_grad()
    def _bernoulli_step(self, v0: Tensor, vv: Tensor | None = None) -> dict[str, float]:
        """One CD/PCD update, written out so each V×H array is touched as few times as possible.
        The update is torch.optim.SGD's (momentum buffer b ← μb + g + λW, W ← W - ηb, with the
        gradient g = -∂ of the log-likelihood) and keeps its state in the optimiser.

        Both phases' statistics come from one GEMM: data and model rows are stacked,
        vv = [v0; vk] [B+M, V] and hh = [-h0/B; hk/M] [B+M, H], so vvᵀhh = -v0ᵀh0/B + vkᵀhk/M.
        `vv`: that stack when v0 already sits in its first rows (else it is made here)."""
        m = self.model
        W, b, c = m.weight, m.visible_bias, m.hidden_bias
        B, V, H = v0.shape[0], m.n_visible, m.n_hidden
        cd1 = not self.config.persistent and self.config.k == 1
        M = self._model_rows(B)
        if vv is None or vv.shape != (B + M, V) or vv.data_ptr() != v0.data_ptr():
            vv = torch.empty(B + M, V, device=v0.device)
            v0 = vv[:B].copy_(v0)
        bf16 = cd1 and not self.config.centering and self._cd_bf16(B, M)
        hh = torch.empty(B + M, H, device=v0.device, dtype=torch.bfloat16 if bf16 else torch.float32)
        if bf16:  # the five products in bfloat16 (`_cd_bf16`); probabilities come back as float32
            vvb = vv.to(torch.bfloat16)
            h0, vk, hk = self._cd1_bf16(vvb, B)
            vv[B:].copy_(vk)
        else:
            h0 = m.hidden_probs(v0)  # p(h | v0) [B, H]
            if cd1:  # CD-1: the reconstruction E[v | h], h ~ p(h | v0) (Hinton 2010)
                vk = vv[B:].copy_(m.visible_mean(self.sampler.noise.bernoulli(h0)))  # [M, V]
            else:
                vk = vv[B:].copy_(self._negative_phase(v0, h0))  # the chains [M, V]
            hk = m.hidden_probs(vk)  # p(h | vk) [M, H]
        # the reconstruction error, and a NaN check, every 10 steps: each is a sync with the
        # device (a GPU's queue drains), so the steps between them never wait for the host
        check = self.step % 10 == 0 or not math.isfinite(self._last_recon)
        if cd1:
            if check:
                self._last_recon = F.mse_loss(vk, v0).item()
            recon = self._last_recon
        else:
            recon = self._recon_every(v0, h0)
        group_w, group_b = self.optimizer.param_groups
        lr, mom, wd = group_w["lr"], group_w["momentum"], group_w["weight_decay"]
        buf = self._buffer(W)
        if self.config.centering:
            db = v0.mean(0) - vk.mean(0)
            dc = h0.mean(0) - hk.mean(0)
            mu, lam = self.visible_offset, self.hidden_offset
            dW = (v0 - mu).t() @ ((h0 - lam) / B) - (vk - mu).t() @ ((hk - lam) / M)  # ∂W [V, H]
            db -= dW @ lam
            dc -= mu @ dW
            buf.mul_(mom).sub_(dW)
            self.hidden_offset.lerp_(h0.mean(0), self.config.center_rate)
        else:
            # b ← μb - v0ᵀh0/B + vkᵀhk/M: one GEMM accumulates into the buffer, beta scales it.
            torch.mul(h0, -1.0 / B, out=hh[:B])
            torch.mul(hk, 1.0 / M, out=hh[B:])
            dc = hh.sum(0, dtype=torch.float32).neg_()  # mean p(h | v0) - mean p(h | vk)
            db = self._row_weights(B, M) @ vv  # mean v0 - mean vk
            gram_update(buf, vvb if bf16 else vv, hh, mom)  # oneDNN or addmm, as calibrated
        if check and not math.isfinite(dc.sum().item()):  # a NaN anywhere in the chains reaches dc
            recon = self._last_recon = float("nan")
        if wd:
            buf.add_(W, alpha=wd)
        W.sub_(buf, alpha=lr)
        bias_buffers = [self._buffer(b), self._buffer(c)]
        torch._foreach_mul_(bias_buffers, group_b["momentum"])
        torch._foreach_sub_(bias_buffers, [db, dc])
        torch._foreach_sub_([b, c], bias_buffers, alpha=group_b["lr"])
        self._last_negative = vk
        return {"recon_error": recon}

    def _cd_bf16(self, B: int, M: int) -> bool:
        """Whether CD-1's products run in bfloat16 here: where the machine's calibration
        predicts the step (three conditionals, the update's GEMM, the weights rounded to
        bfloat16 once) at least 10 % faster than float32's fastest paths, on the CPU.
        bench/rbm_throughput.py checks that the log-likelihood of a model trained so stays
        within 1 nat of float32's. Decided once per trainer and size (runs repeat)."""
        key = (B, M)
        cached = getattr(self, "_bf16_plan", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        m = self.model
        V, H = m.n_visible, m.n_hidden
        cal = calibrate.calibration(self.device)
        use = False
        if self.device.type == "cpu" and cal.has("fused_bf16"):
            f32 = ("addmm", "fused")
            t32 = 3 * cal.time(cal.fastest(f32, B * V * H), B * V * H) + cal.time(cal.fastest(f32, (B + M) * V * H), (B + M) * V * H)
            t16 = 3 * cal.time("fused_bf16", B * V * H) + cal.time("fused_bf16", (B + M) * V * H) + cal.convert * (V * H + (B + M) * (V + H))
            use = t16 < 0.9 * t32
        self._bf16_plan = (key, use)
        return use

    def _cd1_bf16(self, vvb: Tensor, B: int) -> tuple[Tensor, Tensor, Tensor]:
        """CD-1's conditionals with bfloat16 products (float32 sums): (p(h | v0) [B, H],
        E[v | h] [M, V], p(h | vk) [M, H]) as float32, vvb's model rows filled with E[v | h]."""
        lp = torch.ops.mkldnn._linear_pointwise
        m = self.model
        W, b, c = (p.detach().to(torch.bfloat16) for p in (m.weight, m.visible_bias, m.hidden_bias))
        h0 = lp(vvb[:B], W.t(), c, "sigmoid", [], "").float()
        hs = self.sampler.noise.bernoulli(h0, torch.empty(h0.shape, dtype=torch.bfloat16), torch.empty_like(h0))
        vkb = vvb[B:].copy_(lp(hs, W, b, "sigmoid", [], ""))
        hk = lp(vkb, W.t(), c, "sigmoid", [], "").float()
        return h0, vkb.float(), hk

    def _model_rows(self, B: int) -> int:
        """Rows of the model's side of an update: the persistent chains (PCD), else one
        negative sample per data row."""
        return self.sampler.n_chains if self.config.persistent else B

    def _row_weights(self, B: int, M: int) -> Tensor:
        """[1/B] * B + [-1/M] * M: row weights that turn [v0; vk] into mean v0 - mean vk."""
        cached = getattr(self, "_row_w", None)
        if cached is None or cached[0] != (B, M):
            w = torch.cat([torch.full((B,), 1.0 / B), torch.full((M,), -1.0 / M)]).to(self.device)
            cached = self._row_w = ((B, M), w)
        return cached[1]

    def _recon_every(self, v0: Tensor, h0: Tensor, every: int = 10) -> float:
        """PCD and CD-k do not reconstruct the data for their gradient; measure it every few steps."""
        if self.step % every == 0 or not math.isfinite(self._last_recon):
            self._last_recon = F.mse_loss(self.model.visible_mean(h0), v0).item()
        return self._last_recon

    def _gaussian_step(self, v0: Tensor) -> dict[str, float]:
        m: GaussianBernoulliRBM = self.model  # type: ignore[assignment]
        with torch.no_grad():
            vk = self._negative_phase(v0)
        loss = m.free_energy(v0).mean() - m.free_energy(vk.detach()).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(m.parameters(), self.config.grad_clip)
        self.optimizer.step()
        with torch.no_grad():
            m.log_variance.clamp_(min=math.log(m.config.var_floor))
            # both numbers read back together, every 10 steps (and after a non-finite one):
            # each read is a sync with the device, so the steps between never wait for the
            # host. A NaN that appears between two reads reaches the next read (the weights,
            # chains and loss stay NaN), and the snapshots check the weights themselves.
            if self.step % 10 == 0 or not (math.isfinite(self._last_recon) and math.isfinite(self._last_gap)):
                recon = F.mse_loss(m.reconstruct(v0), v0)
                self._last_recon, self._last_gap = torch.stack([recon, loss.detach()]).tolist()
        self._last_negative = vk
        return {"recon_error": self._last_recon, "free_energy_gap": self._last_gap}

    # ---------------------------------------------------------------------- per epoch
    @torch.no_grad()
    def epoch_metrics(self, max_samples: int = 1000) -> dict[str, float]:
        m = self.model
        g = torch.Generator().manual_seed(0)
        idx = torch.randperm(self.n_samples, generator=g)[:max_samples]
        v = m.images_to_visible(self.data.index_select(0, idx.to(self.data.device)))
        if isinstance(m, BernoulliRBM):  # one pass of hidden logits for both numbers
            logits = m.hidden_logits(v)  # [n, H]
            recon = F.mse_loss(m.visible_mean(torch.sigmoid(logits)), v)
            fe = -(v @ m.visible_bias) - F.softplus(logits).sum(1)
            out = {"recon_error": recon.item(), "free_energy": fe.mean().item()}
        else:
            out = {"recon_error": m.reconstruction_error(v).item(), "free_energy": m.free_energy(v).mean().item()}
        if isinstance(m, BernoulliRBM):
            out["pseudo_likelihood"] = m.pseudo_likelihood(v, generator=self.sampler.generator).mean().item()
        return out

    def on_rollback(self) -> None:
        """Chains and offsets that ran on the bad weights restart from the restored model."""
        if not torch.isfinite(self.sampler.visible).all() or not torch.isfinite(self.sampler.hidden).all():
            self.sampler.reset()
        if not torch.isfinite(self.hidden_offset).all():
            self.hidden_offset.fill_(0.5 if self.config.centering else 0.0)

    def frame(self) -> Tensor | None:
        """The dreams: the persistent chains (PCD) or the last negative states (CD)."""
        if self.config.persistent:
            return self.sampler.images("probs")
        if self._last_negative is None:
            return None
        return self.model.visible_to_images(self._last_negative).detach().cpu()

    # ------------------------------------------------------------------------- state
    def extra_state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        t = {f"sampler.{k}": v for k, v in self.sampler.state_tensors().items()}
        t["visible_offset"] = self.visible_offset
        t["hidden_offset"] = self.hidden_offset
        return t, {}

    def check_state(self) -> None:
        """The loaded chains and offsets have this trainer's sizes: n chains of V visible and H
        hidden units (R·n of each for R tempered replicas), offsets [V] and [H]."""
        super().check_state()
        m = self.model
        V, H, n = m.n_visible, m.n_hidden, self._chains
        R = self._replicas
        want = {
            "visible": (n, V), "mean": (n, V), "hidden": (n, H), "clamp_mask": (n, V), "clamp_values": (n, V),
            "replica_visible": (R * n, V), "replica_mean": (R * n, V), "replica_hidden": (R * n, H),
            "betas": (R,), "swap_accepted": (max(0, R - 1),), "swap_proposed": (max(0, R - 1),), "base": (V,),
        }
        have = {f"sampler.{k}": v for k, v in self.sampler.state_tensors().items() if k in want}
        have.update(visible_offset=self.visible_offset, hidden_offset=self.hidden_offset)
        want = {f"sampler.{k}": v for k, v in want.items()} | {"visible_offset": (V,), "hidden_offset": (H,)}
        for name, t in have.items():
            what = name.replace("_", " ")
            if tuple(t.shape) != want[name]:
                raise ValueError(f"its {what} has shape {list(t.shape)}, this model's training needs {list(want[name])}")
            if t.dtype != (torch.uint8 if name.endswith("clamp_mask") else torch.float32):
                raise ValueError(f"its {what} is {t.dtype}, not float32")
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise ValueError(f"its {what} holds NaN or infinite values")

    def load_extra_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        s = {k[len("sampler.") :]: v for k, v in tensors.items() if k.startswith("sampler.")}
        if s:
            self.sampler.load_state_tensors(s)
        if "visible_offset" in tensors:
            self.visible_offset = tensors["visible_offset"].to(self.device, copy=True)
            self.hidden_offset = tensors["hidden_offset"].to(self.device, copy=True)
