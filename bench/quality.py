"""Dreams worth keeping: every generative kind, trained with its defaults on real images, scored
beside simple and published peers trained on the same split.

    .venv/bin/python bench/quality.py                      # the four bench sets, every kind, every peer
    .venv/bin/python bench/quality.py --sets faces-32 --kinds vae --peers pca_gmm --budget 20
    .venv/bin/python bench/quality.py --folder ~/my-drawings --size 32 [--color]
    .venv/bin/python bench/quality.py --threads 1            # on a machine whose cores are busy

Sets (bench/real_images.py; images that installed packages ship, nothing is downloaded):
faces-32 (grey, 70 / 30), textures-32 (grey, 300 / 120), photos-64 (colour, 40 / 20),
digits-28 (binary, 1,500 / 297); also photos-32 and textures-64, or any folder.

Our models (`--kinds`, default rbm, grbm, vae, hybrid; the plain autoencoder cannot dream) are
built exactly as `harmonium train` builds them: `models.factory.Options(kind, image_shape,
seed, frame_every=0)` and `models.factory.build`, then trained to the end (or to `--budget`
seconds, when the run is cut and says so; `--threads N` sets the trainers' CPU threads, a run-time
setting, through `Options.extra`). They are scored by `models.quality.score_model`
(its default number of samples: twice the held-out images, 64..500; RBMs and the hybrid after
1,000 Gibbs steps; the AIS log-likelihood for the binary RBM on binary sets only, where it is a
likelihood of the data).

Peers (`--peers`), trained on the same training images, their samples (as many as ours) scored
by `models.quality.score_samples`:
* pca_gmm: scikit-learn PCA (exact SVD, 32 components, fewer when there are fewer images or pixels) and a
  full-covariance GaussianMixture in its space with min(10, N // (components + 1)) components
  (at least 1: every component then has about as many images as dimensions), random_state =
  seed; samples drawn in PCA space, mapped back, clipped to [0, 1].
* sk_rbm: scikit-learn's BernoulliRBM (100 hidden, learning rate 0.05, batch 20) on intensities
  in [0, 1], trained epoch by epoch (partial_fit on a shuffled order) for as long as our binary
  RBM trained on the set (at least one epoch), else 50 epochs, within --budget. Samples: chains
  started at uniform binary noise, 999 steps of its `gibbs`, then one more step shown as
  probabilities: h ~ P(h | v), image = sigmoid(h·W + b_v). On binary sets its AIS
  log-likelihood is computed as score_model does for ours (the weights copied into our
  BernoulliRBM, the same AIS settings).
* pythae: pythae's `VAE` (BCE reconstruction, the standard ELBO) with our VAE's convolutional
  encoder and decoder (same width, latent 32), trained by pythae's `BaseTrainer` (its
  `train_step` epoch by epoch; its checkpointing and best-epoch selection left out) with Adam
  at 1e-3, our VAE's default batch size and number of epochs, within --budget; sampled with its
  `NormalSampler`. Skipped, with the reason, when pythae is not installed (it installs next to
  torch 2.x with `pip install --no-deps pythae pydantic`; its declared `dataclasses` backport is
  not needed on Python 3.11).

--budget is checked after every step of ours, after every epoch of pythae's (a cut run may
overshoot by one epoch). On a 2-core machine whose cores are busy, two torch threads wait on each
other at every op: measured at load ≈ 5, a VAE step on faces-32 took 1,000 ms with 2 threads and
37 ms with 1, a binary RBM step on photos-64 570 ms and 13 ms; there use `--threads 1` (by the
1-thread step rates the kinds' training on the four sets then takes about 15 min).

The scikit-learn peers run with one BLAS thread: their products are small (batch 20, or a
32-dimensional mixture), where OpenBLAS's second thread only adds synchronisation, and on a
busy machine its spinning made PCA + GMM 10 to 30× slower (18 s instead of 0.6 s on digits).

Output: a Markdown table per set (stdout), progress on stderr, and in --out for each set
SET-data.png (64 training images), SET-MODEL.png (64 samples, 8×8, ×2 nearest) and SET.json
(every figure). Targets, printed ✔/✘ per model and summarised at the end:
  every kind's MMD² ≤ 2× PCA+GMM's; VAE and hybrid MMD² < PCA+GMM's; diversity ≥ 0.7;
  memorisation ≥ 0.5; at 64 px the hybrid's MMD² < the pixel RBM's.
"""
from __future__ import annotations

import argparse
import inspect
import json
import logging
import math
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.real_images import BENCH_SETS, SETS, ImageSetSpec, folder_set  # noqa: E402

KINDS = ("rbm", "grbm", "vae", "hybrid")
PEERS = ("pca_gmm", "sk_rbm", "pythae")
TITLES = {"rbm": "binary RBM", "grbm": "Gaussian RBM", "vae": "VAE", "hybrid": "AE + RBM hybrid",
          "pca_gmm": "PCA + GMM", "sk_rbm": "sklearn BernoulliRBM", "pythae": "pythae VAE"}
GRID = 64  # samples in a grid (8×8)
SK_RBM_EPOCHS = 50
SK_RBM_GIBBS = 1000

# the targets
WITHIN_GMM = 2.0
MIN_DIVERSITY = 0.7
MIN_MEMORISATION = 0.5
MUST_BEAT_GMM = ("vae", "hybrid")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Row:
    """One model's result on one set."""

    model: str
    group: str  # "kind" | "peer"
    train_s: float = math.nan
    report: Any = None  # models.quality.QualityReport
    note: str = ""
    skipped: str = ""  # why there is no result
    cut: bool = False
    info: dict[str, Any] = field(default_factory=dict)  # epochs, steps, components ...
    targets: dict[str, bool] = field(default_factory=dict)
    vs_gmm: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "title": TITLES.get(self.model, self.model), "group": self.group,
                "train_s": None if math.isnan(self.train_s) else round(self.train_s, 3),
                "cut_at_budget": self.cut, "note": self.note, "skipped": self.skipped, "info": self.info,
                "report": self.report.to_dict() if self.report is not None else None,
                "ratio": self.report.ratio if self.report is not None else None,
                "vs_pca_gmm": self.vs_gmm, "targets": self.targets}


# ------------------------------------------------------------------------------ grids
def save_grid(images, path: Path, scale: int = 2) -> None:
    """Images [n, C, H, W] in [0, 1] (or uint8) -> an 8-column mosaic PNG, upscaled ×scale (nearest)."""
    from PIL import Image

    from studio.images import tile, to_uint8

    im = Image.fromarray(tile(to_uint8(images[:GRID]), cols=8))
    im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST).save(path)


# ------------------------------------------------------------------------ our models
def train_kind(kind: str, train: np.ndarray, seed: int, budget: float | None, threads: int | None = None) -> tuple[Any, Row]:
    from models.device import seed_everything
    from models.factory import Options, build
    from models.training import TrainingDiverged

    row = Row(kind, "kind")
    seed_everything(seed)  # as `harmonium train` does
    options = Options(kind=kind, image_shape=tuple(train.shape[1:]), seed=seed, frame_every=0)
    if threads:
        options.extra["threads"] = threads  # a run-time setting every trainer config takes, not a model default
    trainer = build(options, torch.from_numpy(train))
    total = trainer.total_steps
    row.info = {"epochs": trainer.config.epochs, "batch_size": trainer.config.batch_size, "total_steps": total}
    log(f"    {kind}: training, {total} steps, {trainer.config.epochs} epochs, batch {trainer.config.batch_size}")
    t0 = time.perf_counter()
    run = trainer.run()
    try:
        for _ in run:
            if budget and time.perf_counter() - t0 > budget:
                run.close()  # stopping is closing the generator
                row.cut = True
                break
    except TrainingDiverged as e:
        row.note = f"diverged: {e}"
    row.train_s = time.perf_counter() - t0
    trainer.model.eval()
    row.info["steps"] = trainer.step
    if row.cut:
        row.note = f"cut at the {budget:g} s budget after {trainer.step} of {total} steps"
    return trainer.model, row


def score_kind(model, row: Row, train: np.ndarray, heldout: np.ndarray, seed: int, binary: bool, out: Path, tag: str) -> None:
    from models import factory
    from models.factory import sample_images
    from models.quality import score_model

    t0 = time.perf_counter()
    with _recording(factory, "sample_images") as drawn:
        row.report = score_model(model, torch.from_numpy(train), torch.from_numpy(heldout), seed=seed, ais=binary)
    # The grid shows the first 64 of the very samples that were scored (drawing them again would
    # double the cost: 1,000 Gibbs steps of a 64 px colour RBM are slow); a fresh draw otherwise.
    grid = drawn[-1][:GRID] if drawn and len(drawn[-1]) >= GRID else sample_images(model, GRID, seed=seed)
    save_grid(grid, out / f"{tag}-{row.model}.png")
    row.info["score_s"] = round(time.perf_counter() - t0, 2)


@contextmanager
def _recording(module, name: str):
    """While inside, `module.name` (a function) also appends each result to the yielded list."""
    original = getattr(module, name)
    results: list[Any] = []

    def recorded(*args, **kwargs):
        out = original(*args, **kwargs)
        results.append(out)
        return out

    setattr(module, name, recorded)
    try:
        yield results
    finally:
        setattr(module, name, original)


# ------------------------------------------------------------------------------ peers
def _flat(train: np.ndarray) -> np.ndarray:
    return train.reshape(len(train), -1).astype(np.float64) / 255.0


def peer_pca_gmm(train: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, Row]:
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    row = Row("pca_gmm", "peer")
    x = _flat(train)
    k = int(min(32, len(x) - 1, x.shape[1]))
    g = int(max(1, min(10, len(x) // (k + 1))))
    t0 = time.perf_counter()
    pca = PCA(n_components=k, svd_solver="full").fit(x)  # exact (the randomised default is no faster here)
    gmm = GaussianMixture(n_components=g, covariance_type="full", random_state=seed).fit(pca.transform(x))
    row.train_s = time.perf_counter() - t0
    z, _ = gmm.sample(n)  # grouped by component: shuffled for the grid
    z = z[np.random.default_rng(seed).permutation(n)]
    samples = np.clip(pca.inverse_transform(z), 0.0, 1.0).reshape(n, *train.shape[1:])
    row.info = {"pca_components": k, "gmm_components": g, "explained_variance": round(float(pca.explained_variance_ratio_.sum()), 3)}
    return samples.astype(np.float32), row


def _sk_to_ours(sk, shape):
    from models.rbm import BernoulliRBM, RBMConfig

    model = BernoulliRBM(RBMConfig(int(np.prod(shape)), sk.components_.shape[0], tuple(shape)))
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(sk.components_.T))
        model.visible_bias.copy_(torch.from_numpy(sk.intercept_visible_))
        model.hidden_bias.copy_(torch.from_numpy(sk.intercept_hidden_))
    return model.eval()


def peer_sk_rbm(train: np.ndarray, n: int, seed: int, match_s: float | None, budget: float | None) -> tuple[np.ndarray, Row, Any]:
    from scipy.special import expit
    from sklearn.neural_network import BernoulliRBM as SkRBM

    row = Row("sk_rbm", "peer")
    x = _flat(train)
    rng = np.random.default_rng(seed)
    sk = SkRBM(n_components=100, learning_rate=0.05, batch_size=20, n_iter=1, random_state=seed)
    limit = min(match_s if match_s else math.inf, budget or math.inf)
    t0 = time.perf_counter()
    sk.fit(x)  # the first epoch initialises; the others are partial_fit over a shuffled order
    epochs = 1
    while (time.perf_counter() - t0 < limit) if match_s else (epochs < SK_RBM_EPOCHS and time.perf_counter() - t0 < limit):
        order = rng.permutation(len(x))
        for i in range(0, len(x), 20):
            sk.partial_fit(x[order[i : i + 20]])
        epochs += 1
    row.train_s = time.perf_counter() - t0
    row.cut = not match_s and epochs < SK_RBM_EPOCHS
    if row.cut:
        row.note = f"cut at the {budget:g} s budget after {epochs} of {SK_RBM_EPOCHS} epochs"
    row.info = {"epochs": epochs, "matched_seconds_of": "rbm" if match_s else None}
    t1 = time.perf_counter()
    v = (rng.random((n, x.shape[1])) < 0.5).astype(np.float64)
    for _ in range(SK_RBM_GIBBS - 1):
        v = sk.gibbs(v)
    h = (rng.random((n, sk.components_.shape[0])) < sk.transform(v)).astype(np.float64)
    p = expit(h @ sk.components_ + sk.intercept_visible_)
    row.info["sample_s"] = round(time.perf_counter() - t1, 2)
    return p.reshape(n, *train.shape[1:]).astype(np.float32), row, sk


def _pythae_missing() -> str:
    try:
        import pythae  # noqa: F401
    except Exception as e:  # ImportError, or a pythae that does not import with this torch / pydantic
        return (f"pythae is not installed or does not import ({type(e).__name__}: {e}); "
                f"`.venv/bin/pip install --no-deps pythae pydantic` adds it without touching torch")
    return ""


def peer_pythae(train: np.ndarray, n: int, seed: int, budget: float | None) -> tuple[np.ndarray | None, Row]:
    row = Row("pythae", "peer")
    missing = _pythae_missing()
    if missing:
        row.skipped = missing
        return None, row
    from pythae.data.preprocessors import DataProcessor
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.samplers import NormalSampler
    from pythae.trainers import BaseTrainer, BaseTrainerConfig
    from pythae.trainers.training_callbacks import CallbackHandler, TrainingCallback

    from models.autoencoder import ConvDecoder, ConvEncoder
    from models.factory import default_batch_size, default_epochs, default_width

    for name in list(logging.root.manager.loggerDict):  # pythae's modules log at INFO on import: quiet them
        if name.startswith("pythae"):
            logging.getLogger(name).setLevel(logging.WARNING)

    c, size = int(train.shape[1]), int(train.shape[2])
    latent, width = 32, default_width(size, c)

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = ConvEncoder(size, c, width, 2 * latent)

        def forward(self, x):
            mu, logvar = self.net(x).chunk(2, dim=1)
            return ModelOutput(embedding=mu, log_covariance=logvar.clamp(-30.0, 20.0))

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = ConvDecoder(size, c, width, latent)

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

    torch.manual_seed(seed)
    batch = default_batch_size(len(train))
    epochs = default_epochs(len(train), batch)
    model = VAE(VAEConfig(input_dim=tuple(train.shape[1:]), latent_dim=latent, reconstruction_loss="bce"),
                encoder=Encoder(), decoder=Decoder())
    data = DataProcessor().process_data(train.astype(np.float32) / 255.0)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = BaseTrainerConfig(output_dir=tmp, num_epochs=epochs, learning_rate=1e-3, per_device_train_batch_size=batch,
                                seed=seed, no_cuda=not torch.cuda.is_available())
        trainer = BaseTrainer(model, DataProcessor.to_dataset(data), training_config=cfg)
        trainer.prepare_training()
        trainer.callback_handler = CallbackHandler(callbacks=[TrainingCallback()], model=trainer.model)  # no progress bars
        t0 = time.perf_counter()
        done = 0
        for epoch in range(1, epochs + 1):
            trainer.train_step(epoch)
            done = epoch
            if budget and time.perf_counter() - t0 > budget and epoch < epochs:
                row.cut = True
                break
        row.train_s = time.perf_counter() - t0
    model = trainer.model.eval()
    row.info = {"epochs": epochs, "epochs_done": done, "batch_size": batch, "learning_rate": 1e-3, "latent": latent, "width": width}
    if row.cut:
        row.note = f"cut at the {budget:g} s budget after {done} of {epochs} epochs"
    torch.manual_seed(seed)
    with torch.no_grad():
        samples = NormalSampler(model).sample(num_samples=n, return_gen=True).float().clamp(0, 1).cpu().numpy()
    return samples, row


# ------------------------------------------------------------------------------ a set
def run_set(tag: str, spec: ImageSetSpec, kinds: list[str], peers: list[str], seed: int, budget: float | None, out: Path,
            threads: int | None = None) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    from models.quality import default_n_samples, score_model, score_samples

    t_set = time.perf_counter()
    train, heldout = spec.load(seed=seed)
    binary = bool(np.isin(train, (0, 255)).all() and np.isin(heldout, (0, 255)).all())
    n = default_n_samples(len(heldout))
    log(f"[{tag}] {spec.description}: {len(train)} train / {len(heldout)} held-out {tuple(train.shape[1:])}, {n} samples per model")
    pick = np.random.default_rng(seed).permutation(len(train))[:GRID]
    save_grid(train[pick], out / f"{tag}-data.png")
    train_t, heldout_t = torch.from_numpy(train), torch.from_numpy(heldout)
    rows: list[Row] = []
    rbm_s = None

    for kind in kinds:
        try:
            model, row = train_kind(kind, train, seed, budget, threads)
            log(f"    {kind}: trained in {row.train_s:.1f} s{' (' + row.note + ')' if row.note else ''}; scoring")
            score_kind(model, row, train, heldout, seed, binary, out, tag)
            if kind == "rbm":
                rbm_s = row.train_s
            r = row.report
            log(f"    {kind}: MMD² {r.mmd2 * 1e3:.2f}e-3 ({r.ratio:.1f}× floor), diversity {r.diversity:.2f}, "
                f"memorisation {r.memorisation:.2f}, scored in {row.info['score_s']:.1f} s")
        except Exception as e:  # one model failing must not lose the others' results
            row = Row(kind, "kind", skipped=f"{type(e).__name__}: {e}")
            log(f"    {kind}: FAILED: {row.skipped}")
        rows.append(row)

    for peer in peers:
        t0 = time.perf_counter()
        try:
            extra = None
            if peer == "pca_gmm":
                with threadpool_limits(1):
                    samples, row = peer_pca_gmm(train, n, seed)
            elif peer == "sk_rbm":
                with threadpool_limits(1):
                    samples, row, sk = peer_sk_rbm(train, n, seed, rbm_s, budget)
                if binary:
                    extra = sk
            else:
                samples, row = peer_pythae(train, n, seed, budget)
            if samples is None:
                log(f"    {peer}: skipped: {row.skipped}")
                rows.append(row)
                continue
            log(f"    {peer}: trained in {row.train_s:.2f} s; scoring")
            row.report = score_samples(samples, train_t, heldout_t, seed=seed)
            if extra is not None:  # the AIS log-likelihood, as score_model computes it for our binary RBM
                from models.factory import evaluate

                params = inspect.signature(score_model).parameters
                metrics = evaluate(_sk_to_ours(extra, train.shape[1:]), heldout_t, ais_runs=params["ais_runs"].default,
                                   ais_betas=params["ais_betas"].default, seed=seed, base_images=train_t)
                row.report.log_likelihood = float(metrics["log_likelihood"])
            save_grid(samples, out / f"{tag}-{peer}.png")
            row.info["score_s"] = round(time.perf_counter() - t0 - row.train_s, 2)
            r = row.report
            log(f"    {peer}: MMD² {r.mmd2 * 1e3:.2f}e-3 ({r.ratio:.1f}× floor), diversity {r.diversity:.2f}, memorisation {r.memorisation:.2f}")
        except Exception as e:
            row = Row(peer, "peer", skipped=f"{type(e).__name__}: {e}")
            log(f"    {peer}: FAILED: {row.skipped}")
        rows.append(row)

    judge(rows, size=int(train.shape[-1]))
    first = next((r.report for r in rows if r.report is not None), None)
    result = {
        "set": tag, "description": spec.description, "data": spec.kind, "binary": binary, "shape": list(train.shape[1:]),
        "n_train": len(train), "n_heldout": len(heldout), "n_samples": n, "seed": seed, "budget_s": budget, "threads": threads or torch.get_num_threads(),
        "floor": first.floor if first else None, "ceiling": first.ceiling if first else None,
        "bandwidth": first.bandwidth if first else None, "seconds": round(time.perf_counter() - t_set, 1),
        "rows": [r.to_dict() for r in rows],
    }
    (out / f"{tag}.json").write_text(json.dumps(result, indent=1, default=_json_default))
    log(f"[{tag}] done in {result['seconds']:.0f} s")
    return result


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(type(o).__name__)


def judge(rows: list[Row], size: int) -> None:
    """Fill each row's `vs_gmm` and, for our kinds, its targets."""
    by = {r.model: r for r in rows if r.report is not None}
    gmm = by.get("pca_gmm")
    for r in by.values():
        if gmm is not None and gmm.report.mmd2 > 0:
            r.vs_gmm = r.report.mmd2 / gmm.report.mmd2
        if r.group != "kind":
            continue
        t = r.targets
        if r.vs_gmm is not None:
            t["within_2x_gmm"] = r.vs_gmm <= WITHIN_GMM
            if r.model in MUST_BEAT_GMM:
                t["beats_gmm"] = r.vs_gmm < 1.0
        t["diversity"] = r.report.diversity >= MIN_DIVERSITY
        t["memorisation"] = r.report.memorisation >= MIN_MEMORISATION
        if r.model == "hybrid" and size >= 64 and "rbm" in by:
            t["beats_rbm_64px"] = r.report.mmd2 < by["rbm"].report.mmd2


# ------------------------------------------------------------------------------ output
TARGET_LABELS = {"within_2x_gmm": "≤2×G", "beats_gmm": "<G", "diversity": "div", "memorisation": "mem", "beats_rbm_64px": "<RBM"}


def _mark(ok: bool) -> str:
    return "✔" if ok else "✘"


def _f(v: float | None, fmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return "∞" if math.isinf(v) else format(v, fmt)


def table(result: dict[str, Any]) -> str:
    fl, ce = result["floor"], result["ceiling"]
    head = [f"### {result['set']}: {result['description']}", "",
            f"{result['n_train']} train / {result['n_heldout']} held-out, {result['n_samples']} samples per model, seed {result['seed']}, "
            f"{result['threads']} CPU thread(s)"
            + (f", budget {result['budget_s']:g} s per model" if result["budget_s"] else "") + ". "
            + (f"Floor (train vs held-out) MMD² = {fl * 1e3:.3f}e-3, noise ceiling {ce * 1e3:.2f}e-3 (×1000: {fl * 1e3:.3f} … {ce * 1e3:.2f})."
               if fl is not None else ""), "",
            "| model | train s | MMD² ×1000 | MMD²/floor | vs PCA+GMM | diversity | memorisation | LL (nats) | targets |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    notes = []
    for r in result["rows"]:
        name = r["title"] + ("*" if r["cut_at_budget"] else "")
        if r["report"] is None:
            head.append(f"| {name} | — | — | — | — | — | — | — | skipped |")
            notes.append(f"{r['title']}: {r['skipped']}")
            continue
        q = r["report"]
        tg = " ".join(f"{TARGET_LABELS[k]} {_mark(v)}" for k, v in r["targets"].items()) if r["group"] == "kind" else ""
        head.append(f"| {name} | {_f(r['train_s'], '.1f')} | {q['mmd2'] * 1e3:.3f} | {_f(r['ratio'], '.1f')} | "
                    f"{_f(r['vs_pca_gmm'], '.2f')} | {q['diversity']:.2f} | {q['memorisation']:.2f} | "
                    f"{_f(q['log_likelihood'], '.1f')} | {tg} |")
        if r["note"]:
            notes.append(f"{r['title']}: {r['note']}")
    if notes:
        head += [""] + [f"- {n}" for n in notes]
    return "\n".join(head)


def summary(results: list[dict[str, Any]]) -> str:
    lines = ["## Targets", "",
             "Targets: ≤2×G = MMD² within 2× of PCA+GMM's; <G = below PCA+GMM's (VAE, hybrid); div = diversity ≥ 0.7; "
             "mem = memorisation ≥ 0.5; <RBM = the hybrid below the pixel RBM (64 px sets).", ""]
    names = {"within_2x_gmm": "every kind's MMD² within 2× of PCA+GMM's", "beats_gmm": "VAE and hybrid MMD² below PCA+GMM's",
             "diversity": f"diversity ≥ {MIN_DIVERSITY}", "memorisation": f"memorisation ≥ {MIN_MEMORISATION}",
             "beats_rbm_64px": "the hybrid beats the pixel RBM at 64 px"}
    for key, text in names.items():
        fails, n = [], 0
        for res in results:
            for r in res["rows"]:
                if key in r["targets"]:
                    n += 1
                    if not r["targets"][key]:
                        fails.append(f"{res['set']} {r['model']}")
        if n == 0:
            lines.append(f"- {text}: not measured")
        else:
            lines.append(f"- {_mark(not fails)} {text}: {n - len(fails)} of {n} pass" + (f" (failing: {', '.join(fails)})" if fails else ""))
    missing = [f"{res['set']} {r['model']}" for res in results for r in res["rows"] if r["group"] == "kind" and r["report"] is None]
    if missing:
        lines.append(f"- ✘ not scored (failed): {', '.join(missing)}")
    cut = [f"{res['set']} {r['model']}" for res in results for r in res["rows"] if r["cut_at_budget"]]
    if cut:
        lines.append(f"- * cut at the time budget (not the defaults' full training): {', '.join(cut)}")
    return "\n".join(lines)


def _names(text: str, known: tuple[str, ...], what: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in known]
    if bad:
        raise SystemExit(f"unknown {what}: {', '.join(bad)} (known: {', '.join(known)})")
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", help=f"comma-separated (default {','.join(BENCH_SETS)}; known: {', '.join(SETS)})")
    ap.add_argument("--kinds", default=",".join(KINDS), help="our model kinds (default %(default)s)")
    ap.add_argument("--peers", default=",".join(PEERS), help="peers (default %(default)s; '' for none)")
    ap.add_argument("--folder", help="also (or, without --sets, only) bench this folder of images")
    ap.add_argument("--size", type=int, default=32, help="image side for --folder (default %(default)s)")
    ap.add_argument("--color", action="store_true", help="--folder in colour (default grey)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "quality"), help="grids and JSON (default %(default)s)")
    ap.add_argument("--budget", type=float, help="seconds of training per model at most (default: train to the end)")
    ap.add_argument("--threads", type=int, help="CPU threads for training and sampling (default: each trainer's own choice); "
                                                "1 on a machine whose cores are busy")
    args = ap.parse_args(argv)
    try:
        import models.quality  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"models.quality is needed to score the samples ({e})")
    kinds = _names(args.kinds, KINDS, "kind")
    peers = _names(args.peers, PEERS, "peer")
    sets: list[tuple[str, ImageSetSpec]] = []
    if args.sets or not args.folder:
        sets += [(s, SETS[s]) for s in _names(args.sets or ",".join(BENCH_SETS), tuple(SETS), "set")]
    if args.folder:
        sets.append((f"folder-{Path(args.folder).resolve().name}-{args.size}", folder_set(args.folder, args.size, args.color)))
    if args.threads:
        torch.set_num_threads(args.threads)  # sampling and scoring; the trainers get it through Options.extra
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from models.device import default_device, describe_device

    log(f"quality bench on {describe_device(default_device())}: sets {', '.join(t for t, _ in sets)}; "
        f"kinds {', '.join(kinds) or 'none'}; peers {', '.join(peers) or 'none'}; out {out}")
    t0 = time.perf_counter()
    results = []
    for tag, spec in sets:
        results.append(run_set(tag, spec, kinds, peers, args.seed, args.budget, out, args.threads))
        print(table(results[-1]) + "\n", flush=True)
    print(summary(results))
    total = time.perf_counter() - t0
    print(f"\n(the bench took {total / 60:.1f} min; grids and JSON in {out})")
    log(f"all done in {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
