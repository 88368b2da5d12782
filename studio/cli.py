"""The `harmonium` command line: train, sample, eval, scan (and, with no command, the studio).

    harmonium train [FOLDER] --model rbm|grbm|ae|vae|hybrid --size 28 --hidden 100 --epochs 50 \
                    [--color] [--seed N] [--batch-size N] [--lr X] [--resume CKPT] \
                    [--k N] [--pcd | --cd] [--chains N] [--momentum M] [--weight-decay W] \
                    [--centering | --no-centering] [--tempering N] [--optimizer sgd|adam] \
                    [--rbm-epochs N] [--beta B] --out model.safetensors
    harmonium sample CKPT --n 64 --steps 1000 [--temperature T] [--width W --height H] --out DIR
    harmonium eval CKPT [FOLDER] [--heldout FOLDER2] [--holdout 0.2] [--samples N] [--steps N] [--seed N]
    harmonium scan FOLDER [--json]

Training prints the settings in force (the kind's defaults chosen from the data; * marks those
given), then iterates the same event generator as the studio, under a progress bar. Ctrl+C stops
it and saves a resumable checkpoint; a diverging run saves the last good model and explains.

A trained model is never thrown away: an `--out` that can never be written (a folder, a
read-only place) is refused before training starts, and when the save fails anyway (a full disk,
a file-size limit, Ctrl+C pressed again during the save) the model goes to the recovery folder
(`~/.local/share/harmonium/recovery`, or `$XDG_DATA_HOME/harmonium/recovery`; else a private
folder in the temp dir), which the message names; the exit status is then 1 (130 after Ctrl+C).
Every file is written atomically (`models.atomic`): no half file, no link written through, and
the temporaries a killed run leaves are swept when the CLI or the studio next starts.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

EXIT_OK, EXIT_USAGE, EXIT_FAILED = 0, 2, 1


def _err(msg: str) -> None:
    print(f"harmonium: {msg}", file=sys.stderr)


# ------------------------------------------------------------------------------ loading
def _load(folder: str | None, preprocess, quiet: bool = False, follow_links: bool = False):
    """Load `folder` (the demo set when None) with a progress bar; report rejected files
    (their names escaped: a file name cannot forge lines or break a strict UTF-8 stderr)."""
    from tqdm import tqdm

    from studio import dataset

    sources = [folder] if folder else [dataset.demo_folder()]
    bar = tqdm(total=0, unit="img", desc="loading", disable=quiet, leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        result = dataset.load_images(sources, preprocess, progress=progress, follow_links=follow_links)
    finally:
        bar.close()
    show = dataset.display_path
    where = show(folder) if folder else f"the demo set ({show(sources[0])})"
    print(f"{len(result)} images from {where}; {len(result.rejected)} rejected", file=sys.stderr)
    for r in result.rejected[:10]:
        print(f"  skipped {show(r.path)}: {show(r.reason)}", file=sys.stderr)
    if len(result.rejected) > 10:
        print(f"  ... and {len(result.rejected) - 10} more (see `harmonium scan`)", file=sys.stderr)
    return result


def _checkpoint_or_exit(path: str, device=None):
    from models.checkpoint import CheckpointError, load_checkpoint

    try:
        return load_checkpoint(path, device=device or "cpu")
    except CheckpointError as e:
        _err(str(e))
        sys.exit(EXIT_FAILED)


# -------------------------------------------------------------------------------- train
#: The training algorithm's flags: argparse dest -> (what it sets, {kind: the field it sets}).
#: The field is a training-config field, except "hidden" / "latent" (`Options`) and the VAE's
#: "beta" (its model config when training starts, its training config when resuming).
TRAIN_FLAGS: dict[str, tuple[str, dict[str, str]]] = {
    "hidden": ("hidden units", {"rbm": "hidden", "grbm": "hidden", "hybrid": "hidden", "texture": "hidden"}),
    "latent": ("code size", {"ae": "latent", "vae": "latent", "hybrid": "latent"}),
    "k": ("Gibbs steps per update", {"rbm": "k", "grbm": "k", "hybrid": "rbm_k", "texture": "k"}),
    "persistent": ("persistent or plain contrastive divergence", {"rbm": "persistent", "grbm": "persistent",
                                                                  "texture": "persistent"}),
    "chains": ("persistent chains", {"rbm": "n_chains", "grbm": "n_chains", "hybrid": "rbm_n_chains", "texture": "n_chains"}),
    "momentum": ("final momentum", {"rbm": "final_momentum", "grbm": "final_momentum", "hybrid": "rbm_final_momentum"}),
    "weight_decay": ("L2 weight decay", {"rbm": "weight_decay", "grbm": "weight_decay", "ae": "weight_decay",
                                         "vae": "weight_decay", "hybrid": "rbm_weight_decay", "texture": "weight_decay"}),
    "centering": ("centering of the binary RBM", {"rbm": "centering"}),
    "tempering": ("parallel tempering of PCD's chains", {"rbm": "tempering", "grbm": "tempering"}),
    "restart": ("restarts of PCD's chains from noise", {"rbm": "restart_every", "grbm": "restart_every"}),
    "short_run": ("short-run chains from noise", {"texture": "short_run"}),
    "optimizer": ("the RBM's optimiser", {"rbm": "optimizer", "grbm": "optimizer"}),
    "rbm_epochs": ("epochs of the hybrid's RBM phase", {"hybrid": "rbm_epochs"}),
    "beta": ("the VAE's KL weight", {"vae": "beta"}),
}

#: Training-config fields that a resumed run cannot change, and why.
FIXED_ON_RESUME = {
    "persistent": "its persistent chains are saved with it",
    "n_chains": "its persistent chains are saved with it",
    "rbm_n_chains": "its persistent chains are saved with it",
    "centering": "its centering offsets are saved with it",
    "optimizer": "its optimiser state is saved with it",
    "weight_decay": "the weight decay is saved in its optimiser state",
    "rbm_weight_decay": "the weight decay is saved in its optimiser state",
}


def _flag(dest: str, value) -> str:
    """The flag as the person typed it."""
    if dest == "persistent":
        return "--pcd" if value else "--cd"
    if dest == "centering":
        return "--centering" if value else "--no-centering"
    return "--" + dest.replace("_", "-")


def _kinds(kinds) -> str:
    kinds = list(kinds)
    return kinds[0] if len(kinds) == 1 else f"{', '.join(kinds[:-1])} and {kinds[-1]}"


def train_settings(args: argparse.Namespace, kind: str) -> dict[str, object]:
    """The algorithm flags given in `args`, as {field of `kind`'s configs: value}. A flag that
    does not apply to `kind`, or a value out of range, raises ValueError with one sentence."""
    from dataclasses import fields

    from models.rbm_trainer import RBMTrainConfig

    out: dict[str, object] = {}
    for dest, (what, by_kind) in TRAIN_FLAGS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        flag = _flag(dest, value)
        if kind not in by_kind:
            raise ValueError(f"{flag} ({what}) applies to {_kinds(by_kind)} models, not to {kind}")
        out[by_kind[kind]] = value
    # The same bounds as a checkpoint's (models/checkpoint.py), so a run the CLI starts can be saved.
    checks = [
        ("k", lambda v: 1 <= v <= 1000, "1 to 1,000"), ("chains", lambda v: 1 <= v <= 1 << 16, "1 to 65,536"),
        ("momentum", lambda v: 0 <= v < 1, "in [0, 1)"), ("weight_decay", lambda v: 0 <= v <= 1e6, "0 to 1e6"),
        ("tempering", lambda v: v == 0 or 2 <= v <= 128, "0 (off) or 2 to 128 replicas"),
        ("restart", lambda v: 0 <= v <= 10**9, "0 (never) or a number of updates"),
        ("short_run", lambda v: 0 <= v <= 256, "0 (PCD or CD) to 256 chains"),
        ("lr", lambda v: 0 < v <= 1e6 or v == math.inf, "above 0 and at most 1e6"),
        ("rbm_epochs", lambda v: v >= 1, "at least 1"), ("beta", lambda v: v >= 0, "0 or more"),
        ("hidden", lambda v: v >= 1, "at least 1"), ("latent", lambda v: v >= 1, "at least 1"),
    ]
    for dest, ok, want in checks:
        value = getattr(args, dest, None)
        if value is not None and not ok(value):
            raise ValueError(f"{_flag(dest, value)} must be {want} (got {value})")
    if args.tempering is not None and "tempering" not in {f.name for f in fields(RBMTrainConfig)}:
        raise ValueError("--tempering needs parallel tempering in RBM training, which this version "
                         "of models/rbm_trainer.py does not have (RBMTrainConfig has no 'tempering')")
    if args.optimizer == "adam" and kind == "rbm":
        raise ValueError("--optimizer adam applies to grbm models only: the binary RBM trains with SGD and momentum")
    return out


def _check_resume(args: argparse.Namespace, ckpt, settings: dict[str, object]) -> dict[str, object]:
    """The overrides of the saved training config for a resumed run; flags that would change
    the model (or what a resumed run cannot change) raise ValueError with one sentence."""
    kind, model, pre = ckpt.kind, ckpt.model, ckpt.preprocess or {}
    name = Path(args.resume).name
    if args.model is not None and args.model != kind:
        raise ValueError(f"--model {args.model}: {name} holds a model of kind {kind}; resume it as it is, or train a new one without --resume")
    hidden = model.n_hidden if kind in ("rbm", "grbm") else getattr(model.config, "n_hidden", getattr(model.config, "n_filters", None))
    latent = model.latent if kind == "hybrid" else getattr(model.config, "latent", None)
    fixed = [("--hidden", args.hidden, hidden, f"has {hidden} {'filters' if kind == 'texture' else 'hidden units'}"), ("--latent", args.latent, latent, f"has a code of {latent}"),
             ("--size", args.size, pre.get("size"), f"was trained on {pre.get('size')}-pixel images"),
             ("--crop", args.crop, pre.get("crop"), f"was trained with --crop {pre.get('crop')}"),
             ("--color", args.color or None, bool(pre.get("color")), "was trained on grayscale images"),
             ("--binarize", args.binarize, pre.get("binarize"), f"was trained with --binarize {pre.get('binarize')}" if pre.get("binarize") else "was trained on grey levels")]
    for flag, given, saved, what in fixed:
        if given is not None and given != saved:
            shown = flag if isinstance(given, bool) else f"{flag} {given}"
            raise ValueError(f"{shown} would change the model: {name} {what}; "
                             "resume without it, or train a new model")
    saved_cfg = (ckpt.meta.get("trainer") or {}).get("train_config", {})
    for field, value in settings.items():
        if field in FIXED_ON_RESUME and field in saved_cfg and saved_cfg[field] != value:
            dest = next(d for d, (_, m) in TRAIN_FLAGS.items() if m.get(kind) == field)
            raise ValueError(f"{_flag(dest, value)} cannot change when resuming: {FIXED_ON_RESUME[field]} "
                             f"({name} has {field} {saved_cfg[field]}); train a new model to change it")
    if args.batch_size is not None and args.batch_size != saved_cfg.get("batch_size", args.batch_size):
        raise ValueError(f"--batch-size cannot change when resuming: the run's steps count batches of "
                         f"{saved_cfg['batch_size']}; train a new model to change it")
    overrides = {k: v for k, v in settings.items() if k not in ("hidden", "latent")}
    if args.lr is not None:
        overrides["learning_rate"] = args.lr
    if args.epochs and kind != "hybrid":
        overrides["epochs"] = args.epochs
    if kind == "hybrid" and (args.epochs or "rbm_epochs" in overrides):
        # --epochs is the autoencoder phase's, as on a fresh run; --rbm-epochs the RBM phase's.
        saved_ae = int(saved_cfg.get("ae_epochs", 0))
        if args.epochs and args.epochs != saved_ae:
            if ((ckpt.meta.get("trainer") or {}).get("extra") or {}).get("phase") == 2:
                raise ValueError(f"--epochs {args.epochs}: the autoencoder phase of {name} is over (it ran "
                                 f"{saved_ae} epochs); give its RBM phase more epochs with --rbm-epochs")
            overrides["ae_epochs"] = args.epochs
        ae = int(overrides.get("ae_epochs", saved_ae))
        rbm = int(overrides.get("rbm_epochs", saved_cfg.get("rbm_epochs", 0)))
        overrides["epochs"] = ae + rbm  # the total the saved config's `epochs` must agree with
    return overrides


def _check_short_run(settings: dict[str, object], short_run: int) -> None:
    """A texture model trained on short runs from noise has no PCD or CD chains to set."""
    given = [flag for flag, field in (("--k", "k"), ("--chains", "n_chains"), ("--cd / --pcd", "persistent"))
             if field in settings]
    if short_run > 0 and given:
        raise ValueError(f"{', '.join(given)} set{'s' if len(given) == 1 else ''} PCD's or CD's chains, but the texture "
                         "RBM trains on short runs from noise (as its dreams run); add --short-run 0 to train by PCD or CD")


def _check_chains(settings: dict[str, object], persistent: bool) -> None:
    if persistent:
        return
    if "n_chains" in settings:
        raise ValueError("--chains sets PCD's persistent chains; with --cd there are none")
    if int(settings.get("tempering") or 0) > 1:
        raise ValueError("--tempering mixes PCD's persistent chains; with --cd there are none")
    if int(settings.get("restart_every") or 0) > 0:
        raise ValueError("--restart restarts PCD's persistent chains; with --cd there are none")


def cmd_train(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from models.checkpoint import save_checkpoint
    from models.device import default_device, describe_device, seed_everything
    from models.factory import Options, build
    from models.kinds import KINDS
    from models.training import TrainingDiverged
    from studio.dataset import Preprocess
    from studio.train_summary import describe_training

    check_out(Path(args.out))  # before any training: a run must not end unable to save
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be at least 1 (got {args.epochs})")
    device = default_device(args.device)
    seed_everything(args.seed)
    if args.resume:
        ckpt = _checkpoint_or_exit(args.resume, device)
        kind = ckpt.kind
        settings = train_settings(args, kind)  # ValueError: one sentence, exit 2 (main)
        overrides = _check_resume(args, ckpt, settings)
        saved_cfg = (ckpt.meta.get("trainer") or {}).get("train_config", {})
        _check_chains(settings, bool(overrides.get("persistent", saved_cfg.get("persistent", True))))
        if kind == "texture":
            saved = {**KINDS[kind].train_config_class.SAVED_DEFAULTS, **saved_cfg}
            _check_short_run(settings, int(overrides.get("short_run", saved["short_run"])))
        pre = Preprocess.from_dict(ckpt.preprocess or {})
        images = _load(args.folder, pre, args.quiet, args.follow_links)
        trainer = ckpt.make_trainer(torch.from_numpy(images.images), device, **overrides)
        given = set(overrides)
        if kind == "hybrid" and args.epochs:
            given.add("ae_epochs")
    else:
        kind = args.model or "rbm"
        settings = train_settings(args, kind)
        _check_chains(settings, bool(settings.get("persistent", True)))
        if kind == "texture":  # crops of its photos at their own grain (studio.dataset.texture)
            from studio.cli_texture import texture_preprocess

            _check_short_run(settings, int(settings.get("short_run", KINDS[kind].train_config_class.short_run)))

            pre = texture_preprocess(args)
        else:
            pre = Preprocess(size=args.size if args.size is not None else 28, color=args.color, crop=args.crop or "center", binarize=args.binarize)
        images = _load(args.folder, pre, args.quiet, args.follow_links)
        if len(images) == 0:
            _err("no usable images: nothing to train on")
            return EXIT_FAILED
        opts = Options(
            kind=kind,
            image_shape=images.images.shape[1:],
            hidden=args.hidden,
            latent=args.latent,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            seed=args.seed,
            frame_every=0,
            extra={k: v for k, v in settings.items() if k not in ("hidden", "latent")},
        )
        try:
            trainer = build(opts, torch.from_numpy(images.images), device)
        except ValueError as e:
            _err(str(e))
            return EXIT_USAGE
        given = set(settings)
        given |= {f for f, v in [("batch_size", args.batch_size), ("learning_rate", args.lr),
                                 ("ae_epochs" if kind == "hybrid" else "epochs", args.epochs)] if v is not None}
    if not args.quiet:
        print(describe_training(trainer, given, where=describe_device(device)), file=sys.stderr)
    out = Path(args.out)
    run = trainer.run()
    bar = tqdm(total=trainer.total_steps, initial=trainer.step, unit="step", disable=args.quiet)
    outcome, diverged = "finished", None
    try:
        try:
            for ev in run:
                bar.update(ev.step - bar.n)
                if ev.kind == "epoch":
                    bar.set_postfix({k: f"{v:.4g}" for k, v in ev.metrics.items() if k != "lr"})
        except KeyboardInterrupt:
            outcome = "interrupted"
            run.close()
        except TrainingDiverged as e:
            outcome, diverged = "diverged", e
    except KeyboardInterrupt:  # pressed again while the run was stopping: the model is still here
        outcome = "interrupted"
    finally:
        bar.close()

    note = {"finished": "finished", "interrupted": "interrupted", "diverged": "diverged; last good weights"}[outcome]

    def write(path: Path, with_state: bool) -> None:
        save_checkpoint(path, trainer.model, trainer=trainer if with_state else None, preprocess=pre.to_dict(),
                        extra={"source": args.folder or "demo", "note": note})

    saved = save_or_recover(out, write)
    if outcome == "diverged":
        _err(str(diverged))
    if saved.path != out:  # the recovery folder, or nowhere: one sentence that says which
        if outcome == "interrupted":
            print(f"\nstopped at step {trainer.step}", file=sys.stderr)
        _err(saved.message())
        return 130 if saved.path is not None and (outcome == "interrupted" or saved.interrupted) else EXIT_FAILED
    if outcome == "interrupted":
        print(f"\nstopped at step {trainer.step}; saved to {out} (resume with --resume {out})", file=sys.stderr)
        return 130
    if outcome == "diverged":
        _err(f"The last good model was saved to {out}.")
        return EXIT_FAILED
    last = trainer.history[-1] if trainer.history else {}
    summary = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k not in {"epoch", "step", "lr"})
    print(f"saved {out} ({summary})")
    return 130 if saved.interrupted else EXIT_OK


# ----------------------------------------------------------------------------- recovery
def check_out(out: Path) -> None:
    """Refuse, before any training, an `--out` that can never be written: a folder, something
    that is not a file (a FIFO, a device), or a place whose nearest existing folder is not
    writable. (A disk that fills up during training is caught when saving: `save_or_recover`.)"""
    import os

    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; name the checkpoint file to write, e.g. {out / 'model.safetensors'}")
    if os.path.lexists(out) and not (out.is_symlink() or out.is_file()):
        raise ValueError(f"--out {out} is not a regular file; name a checkpoint file to write")
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"--out {out} cannot be written: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out} cannot be written: the folder {folder} is read-only or not yours; choose another --out")


def _why(exc: BaseException) -> str:
    """What stopped a write, in a few words."""
    import re

    if isinstance(exc, KeyboardInterrupt):
        return "interrupted by Ctrl+C"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    text = str(exc).strip() or type(exc).__name__
    m = re.search(r"I/O error: (.*?)(?: \(os error \d+\))?$", text)  # safetensors' wording of an OSError
    return m.group(1) if m else text


class Saved:
    """Where `save_or_recover` put the model: `path` (None: nowhere), `problem` (why not at the
    target; None when it went there), `with_state` (False: the model alone, not resumable),
    `interrupted` (Ctrl+C was pressed during the save) and `failures` (every place tried)."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.path: Path | None = None
        self.problem: str | None = None
        self.with_state = True
        self.interrupted = False
        self.failures: list[tuple[Path, str]] = []

    def message(self) -> str:
        from studio.dataset import display_path as show

        if self.path is None and len(self.failures) == 1:
            return f"could not save the trained model to {show(self.target)} ({self.problem}); it is lost"
        if self.path is None:
            tried = "; ".join(f"{show(p)}: {why}" for p, why in self.failures)
            return f"the trained model could not be saved anywhere ({tried}); it is lost"
        what = "the trained model" if self.with_state else "the trained model (without its training state, so it cannot be resumed)"
        resume = f"; resume it with --resume {show(self.path)}" if self.with_state else ""
        return (f"could not write {show(self.target)} ({self.problem}), so {what} was saved to "
                f"{show(self.path)} instead{resume}")


def recovery_places() -> list[Path]:
    """Folders for a model that could not be written where asked, best first: the user's data
    folder (`models.atomic.recovery_dir`, e.g. ~/.local/share/harmonium/recovery), then a
    private folder in the temp dir (often another disk). Folders that cannot be made are left
    out."""
    import os
    import tempfile

    from models.atomic import recovery_dir

    places = []
    try:
        recovery_dir().mkdir(parents=True, exist_ok=True)
        places.append(recovery_dir())
    except OSError:
        pass
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    tmp = Path(tempfile.gettempdir()) / f"harmonium-recovery-{uid}"
    try:
        tmp.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(tmp)  # the temp dir is shared: use it only if it is our own real folder
        import stat

        if stat.S_ISDIR(st.st_mode) and (not hasattr(os, "getuid") or st.st_uid == os.getuid()):
            places.append(tmp)
    except OSError:
        pass
    return places


def save_or_recover(out: Path, write) -> Saved:
    """Save the model with `write(path, with_state)` to `out`; if that fails for any reason (a
    full disk, a file-size limit, a read-only folder, `out` a folder, Ctrl+C during the save),
    save it to a recovery place instead (`recovery_places`), with its training state and, if
    that does not fit, without. Never raises: a finished run is not thrown away. Ctrl+C is
    ignored while the recovery copy is written."""
    import signal
    import threading

    from models.atomic import unique_path
    from models.checkpoint import CheckpointError

    saved = Saved(out)
    try:
        write(out, True)
        saved.path = out
        return saved
    except BaseException as e:  # noqa: BLE001 — whatever stops the save, the model must go somewhere
        if not isinstance(e, (Exception, KeyboardInterrupt)):
            raise
        saved.problem = _why(e)
        saved.interrupted = isinstance(e, KeyboardInterrupt)
        saved.failures.append((out, saved.problem))
        if isinstance(e, CheckpointError):  # the model itself cannot be saved: no other place helps
            return saved
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
    try:
        name = out.name if out.name and out.suffix == ".safetensors" else (out.name or "model") + ".safetensors"
        for with_state in (True, False):
            for folder in recovery_places():
                path = unique_path(folder, name)
                try:
                    write(path, with_state)
                except Exception as e:  # noqa: BLE001
                    saved.failures.append((path, _why(e)))
                    continue
                saved.path, saved.with_state = path, with_state
                return saved
        return saved
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)


# ------------------------------------------------------------------------------- sample
GRID_PAD = 2  # pixels between the tiles of `harmonium sample`'s grid.png


def cmd_sample(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from models.device import default_device, seed_everything
    from models.factory import make_sampler
    from models.rbm import BernoulliRBM
    from models.tempering import base_from_checkpoint
    from studio.images import images_to_uint8, mosaic, save_png  # the one PNG writer: atomic, with provenance

    if args.n is not None and not 1 <= args.n <= 4096:
        raise ValueError(f"--n must be 1 to 4,096 samples (got {args.n})")
    if args.steps is not None and args.steps < 0:
        raise ValueError(f"--steps cannot be negative (got {args.steps})")
    device = default_device(args.device)
    if args.seed is None:  # a random run: draw its seed, so that the PNGs record the seed used
        import secrets

        args.seed = secrets.randbelow(2**31)
    seed_everything(args.seed)
    ckpt = _checkpoint_or_exit(args.checkpoint, device)
    if hasattr(ckpt.model, "synthesize"):  # a texture model: seamless, at any size
        from studio.cli_texture import sample_textures

        return sample_textures(args, ckpt)
    if args.width is not None or args.height is not None:
        c, h, w = ckpt.model.config.image_shape if hasattr(ckpt.model.config, "image_shape") else (0, 0, 0)
        raise ValueError(f"--width and --height apply to texture models only: a {ckpt.kind} model dreams at its "
                         f"training images' size" + (f" ({w}×{h})" if h else ""))
    args.n = 64 if args.n is None else args.n
    args.steps = 1000 if args.steps is None else args.steps
    base = None
    if isinstance(ckpt.model, BernoulliRBM):  # temper the chains toward the training data's base rate (kept in the file)
        base = base_from_checkpoint(ckpt.model, args.checkpoint)
    try:
        sampler = make_sampler(ckpt.model, n_chains=args.n, seed=args.seed, temperature=args.temperature, base=base)
    except ValueError as e:
        _err(f"{e}: sample from an RBM, Gaussian RBM, VAE or hybrid checkpoint")
        return EXIT_USAGE
    chunk = max(1, min(50, args.steps))
    with tqdm(total=args.steps, unit="step", disable=args.quiet, desc="Gibbs") as bar:
        done = 0
        while done < args.steps:
            k = min(chunk, args.steps - done)
            sampler.step(k)
            done += k
            bar.update(k)
    imgs = images_to_uint8(sampler.images("samples" if args.binary else "probs"))
    out = Path(args.out)
    info = {"model": ckpt.kind, "checkpoint_sha256": ckpt.sha256, "seed": args.seed, "steps": args.steps, "temperature": args.temperature}
    files = [(out / f"sample_{i:04d}.png", im, {**info, "chain": i}) for i, im in enumerate(imgs)]
    files.append((out / "grid.png", mosaic(imgs, pad=GRID_PAD), info))
    written, current = 0, out
    try:
        out.mkdir(parents=True, exist_ok=True)
        for current, arr, meta in files:
            save_png(current, arr, meta)
            written += 1
    except OSError as e:
        from studio.dataset import display_path

        _err(f"cannot write {display_path(current)} ({_why(e)}); "
             f"{written} of the {len(files)} PNGs were written, each whole")
        return EXIT_FAILED
    print(f"wrote {len(imgs)} samples and grid.png to {out}")
    return EXIT_OK


# --------------------------------------------------------------------------------- eval
def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from models.device import default_device
    from models.factory import SAMPLE_BURN_IN, evaluate
    from models.quality import score_model, split_heldout
    from models.rbm import RBMBase
    from studio.dataset import Preprocess

    if not 0.0 < args.holdout < 1.0:
        _err(f"--holdout is the fraction of the images to hold out, between 0 and 1 (got {args.holdout})")
        return EXIT_USAGE
    if args.samples is not None and args.samples < 2:
        _err(f"--samples must be at least 2 (got {args.samples})")
        return EXIT_USAGE
    if args.steps is not None and args.steps < 0:
        _err(f"--steps cannot be negative (got {args.steps})")
        return EXIT_USAGE
    device = default_device(args.device)
    ckpt = _checkpoint_or_exit(args.checkpoint, device)
    pre = Preprocess.from_dict(ckpt.preprocess or {})
    images = _load(args.folder, pre, args.quiet, args.follow_links)
    if len(images) == 0:
        _err("no usable images to evaluate on")
        return EXIT_FAILED
    data = torch.from_numpy(images.images)
    where = args.folder or "the demo set"
    if args.heldout:
        held = _load(args.heldout, pre, args.quiet, args.follow_links)
        if len(held) < 2:
            _err(f"{args.heldout} has {len(held)} usable image(s); scoring needs at least 2 held-out images")
            return EXIT_FAILED
        train, heldout = data, torch.from_numpy(held.images)
        sets = f"{len(heldout)} held-out images from {args.heldout}, {len(train)} training images from {where}"
    else:
        try:
            train_idx, heldout_idx = split_heldout(len(data), args.holdout, seed=args.seed)
        except ValueError as e:
            _err(f"{e}; give held-out images with --heldout FOLDER")
            return EXIT_FAILED
        train, heldout = data[train_idx], data[heldout_idx]
        sets = f"{len(heldout)} of the {len(data)} images of {where} held out (seed {args.seed}), the other {len(train)} as training images"
    model = ckpt.model
    metrics = evaluate(model, heldout, ais_runs=args.ais_runs, ais_betas=args.ais_betas, seed=args.seed, base_images=train)
    print(f"{ckpt.kind} model {Path(args.checkpoint).name} against {sets}:")
    print(f"  reconstruction error (MSE per unit): {metrics['recon_error']:.5f}")
    if "log_z" in metrics:
        print(f"  AIS log Z: {metrics['log_z']:.3f}  (±3σ band {metrics['log_z_low']:.3f} … {metrics['log_z_high']:.3f})")
    for k, v in metrics.items():
        if k not in {"recon_error", "log_z", "log_z_low", "log_z_high", "log_likelihood"}:
            print(f"  {k}: {v:.4f}")
    if not (isinstance(model, RBMBase) or hasattr(model, "sample") or hasattr(model, "make_sampler")):
        print(f"  a {ckpt.kind} model cannot dream, so there are no samples to score")
        return EXIT_OK
    try:
        report = score_model(model, train, heldout, n_samples=args.samples, seed=args.seed, steps=args.steps, ais=False)
    except ValueError as e:
        _err(f"cannot score the model's dreams: {e}")
        return EXIT_FAILED
    report.log_likelihood = metrics.get("log_likelihood")
    chains = isinstance(model, RBMBase) or hasattr(model, "rbm")
    steps = f" after {SAMPLE_BURN_IN if args.steps is None else args.steps} Gibbs steps" if chains else ""
    print(f"  {report.n_samples} dreams{steps} (seed {args.seed}), scored in {report.seconds:.1f} s:")
    warnings = set(report.warnings())
    for line in report.lines():
        print(f"  {'warning: ' if line in warnings else ''}{line}")
    return EXIT_OK


# --------------------------------------------------------------------------------- scan
def cmd_scan(args: argparse.Namespace) -> int:
    from studio.dataset import Preprocess, scan_report

    print(scan_report([args.folder], Preprocess(size=args.size, color=args.color), as_json=args.json,
                      follow_links=args.follow_links))
    return EXIT_OK


# ------------------------------------------------------------------------------- parser
def parser() -> argparse.ArgumentParser:
    from models import kinds  # the kinds' records: no torch imported

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", choices=["cpu", "cuda", "mps"], default=None, help="default: CUDA or MPS when present, else CPU")
    common.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    links = argparse.ArgumentParser(add_help=False)
    links.add_argument("--follow-links", action="store_true",
                       help="follow symbolic links that lead out of the image folder (by default they are "
                            "listed as rejected and not read; links inside it are followed)")
    p = argparse.ArgumentParser(prog="harmonium", description="Harmonium: train small generative models on your images and sample their dreams.")
    sub = p.add_subparsers(dest="command", required=True)
    _add = sub.add_parser
    sub.add_parser = lambda *a, parents=(), **k: _add(*a, parents=[common, *parents], **k)  # every command takes --device, -q

    t = sub.add_parser("train", parents=[links], help="train a model on a folder of images (the demo set if none)",
                       description="Every setting left out is the kind's own default, chosen from the data; "
                                   "the settings in force are printed when training starts (* marks yours).")
    t.add_argument("folder", nargs="?", help="folder of images (default: the built-in demo set)")
    t.add_argument("--model", choices=kinds.keys(), default=None, help="default rbm")
    t.add_argument("--size", type=int, default=None, help="image side in pixels (16-128; default 28); a texture: "
                   "the largest side its photos keep (16-1024; default 1024, never above their own)")
    t.add_argument("--color", action="store_true", help="RGB instead of grayscale")
    t.add_argument("--crop", choices=["center", "fit", "stretch"], default=None, help="default center")
    t.add_argument("--binarize", choices=["threshold", "dither"], default=None)
    t.add_argument("--hidden", type=int, default=None, help="hidden units (default from the set: rbm 300-500, grbm 100-500, fewer for large images; hybrid 64)")
    t.add_argument("--latent", type=int, default=None, help="code size of the AE (32) / VAE (about one per 8 images, 8 to 32) / hybrid (16)")
    t.add_argument("--epochs", type=int, default=None, help="epochs (default: about 5,000 updates, 20-500 "
                   "epochs); resuming: the new total. For the hybrid, always its autoencoder phase's "
                   "(a resumed hybrid's too): its RBM phase takes --rbm-epochs")
    t.add_argument("--batch-size", type=int, default=None, help="default: 64, fewer on a small set (ten batches an epoch)")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default: the model's)")
    a = t.add_argument_group("training algorithm", "for RBMs (rbm, grbm) and the hybrid's RBM phase unless said "
                             "otherwise; a flag that does not apply to the model is refused. Defaults: the kind's own, "
                             "printed when training starts")
    a.add_argument("--k", type=int, default=None, metavar="N", help="Gibbs steps per update (CD-k / PCD-k)")
    cd = a.add_mutually_exclusive_group()
    cd.add_argument("--pcd", dest="persistent", action="store_const", const=True, default=None,
                    help="persistent contrastive divergence (the default; rbm, grbm)")
    cd.add_argument("--cd", dest="persistent", action="store_const", const=False,
                    help="plain contrastive divergence, chains started at the data (rbm, grbm)")
    a.add_argument("--chains", type=int, default=None, metavar="N", help="persistent chains (PCD's dreams)")
    a.add_argument("--momentum", type=float, default=None, metavar="M",
                   help="momentum after the first epochs (Adam's β₁ for a grbm on Adam)")
    a.add_argument("--weight-decay", type=float, default=None, metavar="W",
                   help="L2 weight decay of the weights (also ae, vae)")
    a.add_argument("--centering", action=argparse.BooleanOptionalAction, default=None,
                   help="centred gradients (binary rbm only)")
    a.add_argument("--tempering", type=int, default=None, metavar="N",
                   help="parallel tempering of PCD's chains over N replicas (0: off; rbm, grbm)")
    a.add_argument("--restart", type=int, default=None, metavar="N",
                   help="each of PCD's chains restarts from noise once every N updates, in turn (0: never; "
                   "rbm, grbm; default: grbm on images of more than 4,096 values 100, else 0)")
    a.add_argument("--short-run", type=int, default=None, metavar="N",
                   help="texture: N chains per update start from noise and run as its dreams do (40 sweeps, "
                   "annealed); the default 1; 0: PCD or CD with --k, --chains, --cd")
    a.add_argument("--optimizer", choices=["sgd", "adam"], default=None,
                   help="rbm: sgd only; grbm: either")
    a.add_argument("--rbm-epochs", type=int, default=None, metavar="N",
                   help="epochs of the hybrid's RBM phase, after the autoencoder's --epochs (hybrid only)")
    a.add_argument("--beta", type=float, default=None, metavar="B", help="the KL weight of a β-VAE (vae only)")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--resume", metavar="CKPT", help="continue training from a checkpoint (the algorithm flags, "
                   "--lr and --epochs apply as overrides where they can)")
    t.add_argument("--out", required=True, help="checkpoint to write (.safetensors)")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="run Gibbs chains (or the prior) of a trained model and save PNGs")
    s.add_argument("checkpoint")
    s.add_argument("--n", type=int, default=None, help="samples (default 64; texture models 4)")
    s.add_argument("--steps", type=int, default=None,
                   help="Gibbs steps (default 1000; texture models 40 sweeps, annealed from noise)")
    s.add_argument("--width", type=int, default=None, help="texture models: width in pixels (64-2048; default 512)")
    s.add_argument("--height", type=int, default=None, help="texture models: height in pixels (64-2048; default: the width)")
    s.add_argument("--temperature", type=float, default=1.0)
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--binary", action="store_true", help="save sampled states instead of probabilities")
    s.add_argument("--out", required=True, help="folder for sample_NNNN.png and grid.png")
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("eval", parents=[links], help="score a model's dreams against held-out images (MMD², diversity, memorisation; "
                                    "AIS log-likelihood for binary RBMs) and its reconstruction error")
    e.add_argument("checkpoint")
    e.add_argument("folder", nargs="?", help="the images (default: the demo set); part is held out unless --heldout is given")
    e.add_argument("--heldout", metavar="FOLDER2", help="held-out images: then all of FOLDER is the training reference")
    e.add_argument("--holdout", type=float, default=0.2, help="fraction of FOLDER to hold out (default 0.2; 4-500 images)")
    e.add_argument("--samples", type=int, default=None, help="dreams to score (default: twice the held-out images, 64-500)")
    e.add_argument("--steps", type=int, default=None, help="Gibbs steps before a chain is read (default 1000)")
    e.add_argument("--seed", type=int, default=0, help="seed of the split, the dreams and AIS")
    e.add_argument("--ais-runs", type=int, default=100)
    e.add_argument("--ais-betas", type=int, default=14_500)
    e.set_defaults(func=cmd_eval)

    c = sub.add_parser("scan", parents=[links], help="list what a folder holds: accepted images and every rejected file with its reason")
    c.add_argument("folder")
    c.add_argument("--json", action="store_true")
    c.add_argument("--size", type=int, default=28)
    c.add_argument("--color", action="store_true")
    c.set_defaults(func=cmd_scan)
    return p


COMMANDS = {"train", "sample", "eval", "scan"}


def _printable_streams() -> None:
    """Printing must never fail: a file name that is not UTF-8 (or a terminal that is not)
    comes out escaped, as \\xNN, instead of raising UnicodeEncodeError half-way."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):
            pass


def sweep_at_start() -> None:
    """Remove what a killed Harmonium left behind (models.atomic.sweep_stale): the temporaries of
    saves cut short by kill -9 and their work folders in the temp dir. (The studio's window does
    the same when it starts, in the background.)"""
    from models.atomic import sweep_stale

    try:
        sweep_stale()
    except Exception:  # noqa: BLE001 — tidying up must never stop what the person asked for
        pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _printable_streams()
    if not COMMANDS.intersection(argv) and not {"-h", "--help"}.intersection(argv):
        from studio.app import run_studio  # no command: open the studio (FOLDER, --train MODEL)

        return run_studio(argv)
    args = parser().parse_args(argv)
    sweep_at_start()
    try:
        return args.func(args)
    except ValueError as e:  # bad option values (size out of range, ...) reach the user plainly
        from studio.dataset import display_path

        _err(display_path(str(e), one_line=False))
        return EXIT_USAGE
    except OSError as e:  # a file or folder the command needs cannot be read or written
        from studio.dataset import display_path

        where = f" ({display_path(e.filename)})" if e.filename else ""
        _err(f"{_why(e)}{where}")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
