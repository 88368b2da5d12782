"""The command line end to end on a small folder: train, sample, eval, scan, resume, divergence."""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from models.checkpoint import load_checkpoint
from studio.cli import GRID_PAD, main, parser
from studio.images import mosaic

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """30 16×16 images of bars (horizontal or vertical), one broken file, one nested folder."""
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    (d / "sub").mkdir()
    for i in range(30):
        a = np.zeros((16, 16), np.uint8)
        k = rng.integers(2, 14)
        if i % 2:
            a[:, k - 2 : k + 2] = 255
        else:
            a[k - 2 : k + 2, :] = 255
        Image.fromarray(a).save(d / ("sub" if i % 3 == 0 else ".") / f"bar_{i:02d}.png")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    return d


def train(folder, out, *extra) -> int:
    return main(["train", str(folder), "--size", "16", "--hidden", "24", "--epochs", "4", "--batch-size", "10", "--seed", "1", "--out", str(out), "-q", *extra])


def test_train_sample_eval_end_to_end(folder, tmp_path, capsys):
    ckpt = tmp_path / "m.safetensors"
    assert train(folder, ckpt) == 0
    err = capsys.readouterr().err
    assert "30 images" in err and "1 rejected" in err and "broken.png" in err
    ck = load_checkpoint(ckpt)
    assert ck.kind == "rbm" and ck.model.weight.shape == (256, 24)
    assert ck.preprocess["size"] == 16 and len(ck.history) == 4

    out = tmp_path / "samples"
    assert main(["sample", str(ckpt), "--n", "9", "--steps", "30", "--seed", "2", "--out", str(out), "-q"]) == 0
    files = sorted(out.glob("sample_*.png"))
    assert len(files) == 9
    tiles = np.stack([np.asarray(Image.open(f)) for f in files])
    assert tiles.shape == (9, 16, 16) and tiles.dtype == np.uint8
    grid = np.asarray(Image.open(out / "grid.png"))
    assert np.array_equal(grid, mosaic(tiles[..., None], pad=GRID_PAD)[..., 0])
    info = Image.open(out / "grid.png").text
    assert info["harmonium:model"] == "rbm" and info["harmonium:checkpoint_sha256"] == ck.sha256 and info["harmonium:steps"] == "30"

    # the PNGs carry the studio's JSON provenance: imported onto the canvas, they keep it
    from studio.canvas.export import read_provenance
    from studio.canvas.sources import import_png

    want = {"model": "rbm", "checkpoint_sha256": ck.sha256, "seed": 2, "steps": 30, "temperature": 1.0}
    assert read_provenance(out / "grid.png") == want
    layer = import_png(files[3])
    assert layer.provenance["imported"] == {**want, "chain": 3}
    assert np.array_equal(layer.source[..., 0], tiles[3])
    assert import_png(out / "grid.png").provenance["imported"] == want

    capsys.readouterr()
    assert main(["eval", str(ckpt), str(folder), "--ais-betas", "2000", "--ais-runs", "50", "--samples", "40", "--steps", "50", "-q"]) == 0
    text = capsys.readouterr().out
    recon = float(re.search(r"reconstruction error \(MSE per unit\): ([\d.]+)", text).group(1))
    ll = float(re.search(r"log-likelihood (-?[\d.]+) nats per image \(AIS\)", text).group(1))
    assert 0 < recon < 0.25
    assert -256 * math.log(2) < ll < 0  # better than the uniform model, and a real probability
    assert "6 of the 30 images" in text and "the other 24 as training images" in text

    # The printed scores are score_model's on the same split, samples and seed.
    from models.quality import score_model, split_heldout
    from studio.dataset import Preprocess, load_images

    data = torch.from_numpy(load_images([str(folder)], Preprocess.from_dict(ck.preprocess)).images)
    train_idx, heldout_idx = split_heldout(len(data), 0.2, seed=0)
    want = score_model(ck.model, data[train_idx], data[heldout_idx], n_samples=40, steps=50, seed=0, ais=False)
    got = printed_scores(text)
    assert got["floor"] < got["noise"] and got["mmd2"] > 0
    for key, value in [("mmd2", want.mmd2), ("floor", want.floor), ("noise", want.ceiling)]:
        assert got[key] == pytest.approx(value, rel=0.01), key
    assert got["diversity"] == pytest.approx(want.diversity, abs=0.006)
    assert got["memorisation"] == pytest.approx(want.memorisation, abs=0.006)  # inf: "no reference" (duplicate bars)


NUM = r"(-?[\d.]+(?:e-?\d+)?)"


def printed_scores(text: str) -> dict[str, float]:
    """The numbers of `harmonium eval`'s quality lines."""
    m = re.search(rf"MMD² {NUM}  \(floor {NUM} = training vs held-out, noise {NUM}\)", text)
    assert m, text
    return {"mmd2": float(m.group(1)), "floor": float(m.group(2)), "noise": float(m.group(3)),
            "diversity": float(re.search(rf"diversity {NUM} \(", text).group(1)),
            "memorisation": float(mem.group(1)) if (mem := re.search(rf"memorisation {NUM} \(", text))
            else math.inf if "memorisation: no reference" in text else math.nan}


def test_seeded_training_is_reproducible(folder, tmp_path):
    assert train(folder, tmp_path / "a.safetensors") == 0
    assert train(folder, tmp_path / "b.safetensors") == 0
    a, b = load_file(tmp_path / "a.safetensors"), load_file(tmp_path / "b.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_continues_to_more_epochs(folder, tmp_path):
    first = tmp_path / "first.safetensors"
    assert train(folder, first) == 0
    more = tmp_path / "more.safetensors"
    assert main(["train", str(folder), "--resume", str(first), "--epochs", "6", "--out", str(more), "-q"]) == 0
    ck = load_checkpoint(more)
    assert len(ck.history) == 6 and ck.meta["trainer"]["step"] == 6 * 3


def test_divergence_saves_the_last_good_model_and_explains(folder, tmp_path, capsys):
    out = tmp_path / "bad.safetensors"
    assert train(folder, out, "--lr", "inf") == 1
    err = capsys.readouterr().err
    assert "diverged" in err and "last good model was saved" in err
    ck = load_checkpoint(out)  # loads: the weights are finite
    assert all(torch.isfinite(t).all() for t in ck.model.state_dict().values())


def test_bad_checkpoint_gets_a_message_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_text("hello")
    with pytest.raises(SystemExit) as info:
        main(["sample", str(bad), "--out", str(tmp_path / "o"), "-q"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "Cannot open bad.safetensors" in err and "Traceback" not in err


def test_scan_json_through_the_real_entry_point(folder):
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "scan", str(folder), "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    text = json.dumps(report)
    assert "broken.png" in text and "bar_03.png" in text


@pytest.mark.parametrize("kind", ["vae", "hybrid"])
def test_cli_trains_samples_and_evaluates_the_smooth_models(folder, tmp_path, capsys, kind):
    ckpt = tmp_path / f"{kind}.safetensors"
    extra = ["--latent", "8"] + (["--hidden", "12"] if kind == "hybrid" else [])
    rc = main(["train", str(folder), "--model", kind, "--size", "28", "--epochs", "3", "--batch-size", "10",
               "--seed", "1", "--out", str(ckpt), "-q", *extra])
    assert rc == 0
    ck = load_checkpoint(ckpt)
    assert ck.kind == kind
    if kind == "hybrid":  # one file holds both parts
        names = set(load_file(ckpt))
        assert any(n.startswith("autoencoder.") for n in names) and any(n.startswith("rbm.") for n in names)
    out = tmp_path / f"{kind}_samples"
    assert main(["sample", str(ckpt), "--n", "4", "--steps", "5", "--seed", "3", "--out", str(out), "-q"]) == 0
    tiles = [np.asarray(Image.open(f)) for f in sorted(out.glob("sample_*.png"))]
    assert len(tiles) == 4 and all(t.shape == (28, 28) for t in tiles)
    assert len({t.tobytes() for t in tiles}) > 1  # different dreams, not one image repeated
    capsys.readouterr()
    assert main(["eval", str(ckpt), str(folder), "--samples", "16", "--steps", "20", "-q"]) == 0
    text = capsys.readouterr().out
    recon = float(re.search(r"reconstruction error \(MSE per unit\): ([\d.]+)", text).group(1))
    assert 0 < recon < 0.3
    scores = printed_scores(text)
    assert 0 <= scores["floor"] < scores["noise"] and scores["diversity"] >= 0
    assert "16 dreams" in text and "log-likelihood" not in text  # AIS is for binary RBMs only
    if kind == "vae":
        elbo = float(re.search(r"elbo: (-?[\d.]+)", text).group(1))
        assert elbo < 0  # a log-likelihood bound in nats


def test_a_plain_autoencoder_cannot_be_sampled_and_says_so(folder, tmp_path, capsys):
    ckpt = tmp_path / "ae.safetensors"
    assert main(["train", str(folder), "--model", "ae", "--size", "28", "--epochs", "2", "--batch-size", "10", "--seed", "1", "--out", str(ckpt), "-q"]) == 0
    assert main(["sample", str(ckpt), "--out", str(tmp_path / "o"), "-q"]) == 2
    assert "no sampler" in capsys.readouterr().err
    assert main(["eval", str(ckpt), str(folder), "-q"]) == 0  # the reconstruction error, and why no more
    text = capsys.readouterr().out
    assert "reconstruction error" in text and "cannot dream" in text and "MMD²" not in text


@pytest.fixture(scope="module")
def rbm_ckpt(folder, tmp_path_factory) -> Path:
    ckpt = tmp_path_factory.mktemp("rbm") / "m.safetensors"
    assert train(folder, ckpt) == 0
    return ckpt


def test_eval_against_a_second_folder_of_held_out_images(folder, rbm_ckpt, tmp_path, capsys):
    held = tmp_path / "held"
    held.mkdir()
    for i in range(8):  # bars again, in new places
        a = np.zeros((16, 16), np.uint8)
        a[:, i + 3 : i + 6] = 255
        Image.fromarray(a.T if i % 2 else a).save(held / f"h{i}.png")
    capsys.readouterr()
    assert main(["eval", str(rbm_ckpt), str(folder), "--heldout", str(held), "--samples", "20", "--steps", "30",
                 "--ais-runs", "10", "--ais-betas", "200", "-q"]) == 0
    text = capsys.readouterr().out
    assert f"8 held-out images from {held}, 30 training images from {folder}" in text
    scores = printed_scores(text)
    assert 0 < scores["floor"] < scores["noise"] and scores["memorisation"] >= 0
    assert math.isfinite(float(re.search(r"log-likelihood (-?[\d.]+) nats per image", text).group(1)))
    assert "20 dreams after 30 Gibbs steps" in text


def test_eval_of_too_few_images_says_so_in_one_sentence(rbm_ckpt, tmp_path, capsys):
    small = tmp_path / "small"
    small.mkdir()
    for i in range(6):
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(small / f"s{i}.png")
    assert main(["eval", str(rbm_ckpt), str(small), "-q"]) == 1
    err = capsys.readouterr().err
    assert "too few to hold out" in err and "--heldout" in err and "Traceback" not in err
    assert main(["eval", str(rbm_ckpt), str(small), "--holdout", "1.5", "-q"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err


# ------------------------------------------------------------------ the training algorithm's flags
def settings_line(err: str) -> str:
    """The settings `harmonium train` prints when it starts (both lines for the hybrid)."""
    lines = err.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("training "))
    return "\n".join(lines[i : i + 2] if lines[i + 1 : i + 2] and lines[i + 1].startswith("  phase 2") else lines[i : i + 1])


def test_the_printed_settings_are_the_defaults_chosen_from_the_data():
    from models.factory import Options, build, default_batch_size
    from studio.train_summary import describe_training

    lines = {}
    for n in (40, 400):
        data = torch.randint(0, 256, (n, 1, 16, 16), dtype=torch.uint8)
        trainer = build(Options(kind="rbm", image_shape=(1, 16, 16), seed=0, frame_every=0), data, "cpu")
        lines[n] = text = describe_training(trainer)
        c = trainer.config
        assert text.startswith(f"rbm on {n} images 1×16×16: 256 visible × {trainer.model.n_hidden} hidden · ")
        assert f"· batch {default_batch_size(n)} ·" in text
        assert f"· {c.epochs} epochs = {trainer.total_steps:,} updates" in text
        assert f"{'PCD' if c.persistent else 'CD'}-{c.k}" in text and f"weight decay {c.weight_decay:g}" in text
        assert "*" not in text  # nothing was given
    assert default_batch_size(40) != default_batch_size(400)
    assert lines[40].split(" · ")[3:] != lines[400].split(" · ")[3:]


def test_algorithm_flags_are_printed_marked_and_saved_and_resume_overrides_them(folder, tmp_path, capsys):
    ckpt = tmp_path / "cd.safetensors"
    assert main(["train", str(folder), "--size", "16", "--hidden", "24", "--epochs", "1", "--batch-size", "10", "--seed", "1",
                 "--k", "2", "--cd", "--momentum", "0.8", "--weight-decay", "0.01", "--no-centering", "--out", str(ckpt)]) == 0
    line = settings_line(capsys.readouterr().err)
    assert line.startswith("training rbm on CPU") and "30 images 1×16×16: 256 visible × 24 hidden* · CD-2* · " in line
    for part in ("batch 10*", "momentum 0.5→0.8*", "weight decay 0.01*", "centering off*", "1 epoch* = 3 updates", "(* from your flags)"):
        assert part in line, part
    cfg = load_checkpoint(ckpt).meta["trainer"]["train_config"]
    assert (cfg["k"], cfg["persistent"], cfg["final_momentum"], cfg["weight_decay"], cfg["centering"]) == (2, False, 0.8, 0.01, False)

    more = tmp_path / "more.safetensors"  # what a resumed run may change, it changes
    assert main(["train", str(folder), "--resume", str(ckpt), "--epochs", "2", "--k", "3", "--momentum", "0.85",
                 "--cd", "--hidden", "24", "--out", str(more)]) == 0
    line = settings_line(capsys.readouterr().err)
    assert "CD-3*" in line and "momentum 0.5→0.85*" in line and "weight decay 0.01 ·" in line and "2 epochs* = 6 updates" in line
    cfg = load_checkpoint(more).meta["trainer"]["train_config"]
    assert (cfg["k"], cfg["final_momentum"], cfg["epochs"], cfg["persistent"]) == (3, 0.85, 2, False)
    # ... and what it cannot change, or what would change the model, it refuses in one sentence
    for flags, words in [(["--pcd"], "--pcd cannot change when resuming"), (["--hidden", "30"], "--hidden 30 would change the model"),
                         (["--size", "28"], "16-pixel images"), (["--model", "vae"], "kind rbm"),
                         (["--weight-decay", "0.1"], "optimiser state"), (["--batch-size", "8"], "batches of 10")]:
        assert main(["train", str(folder), "--resume", str(ckpt), *flags, "--out", str(tmp_path / "x.safetensors"), "-q"]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("kind,flags,named", [
    ("vae", ["--k", "2"], "--k (Gibbs steps per update) applies to rbm, grbm, hybrid and texture models, not to vae"),
    ("ae", ["--momentum", "0.8"], "applies to rbm, grbm and hybrid models, not to ae"),
    ("hybrid", ["--centering"], "--centering (centering of the binary RBM) applies to rbm models, not to hybrid"),
    ("grbm", ["--no-centering"], "--no-centering (centering of the binary RBM) applies to rbm models, not to grbm"),
    ("hybrid", ["--cd"], "--cd (persistent or plain contrastive divergence) applies to rbm, grbm and texture models"),
    ("rbm", ["--beta", "4"], "--beta (the VAE's KL weight) applies to vae models, not to rbm"),
    ("vae", ["--rbm-epochs", "3"], "applies to hybrid models, not to vae"),
    ("ae", ["--hidden", "10"], "--hidden (hidden units) applies to rbm, grbm, hybrid and texture models, not to ae"),
    ("rbm", ["--latent", "8"], "--latent (code size) applies to ae, vae and hybrid models, not to rbm"),
    ("rbm", ["--optimizer", "adam"], "applies to grbm models only"),
    ("rbm", ["--cd", "--chains", "10"], "with --cd there are none"),
    ("rbm", ["--tempering", "1"], "0 (off) or 2 to 128 replicas"),
    ("rbm", ["--tempering", "100000"], "0 (off) or 2 to 128 replicas"),
    ("rbm", ["--k", "0"], "--k must be 1 to 1,000"),
    ("rbm", ["--k", "5000"], "--k must be 1 to 1,000"),
    ("rbm", ["--chains", "100000"], "--chains must be 1 to 65,536"),
    ("vae", ["--lr", "1e39"], "--lr must be above 0 and at most 1e6"),
    ("vae", ["--lr", "nan"], "--lr must be above 0 and at most 1e6"),
])
def test_a_flag_that_does_not_apply_is_refused_in_one_sentence(folder, tmp_path, capsys, kind, flags, named):
    out = tmp_path / "x.safetensors"
    assert main(["train", str(folder), "--model", kind, "--epochs", "1", *flags, "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert named in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not out.exists()


def test_cd_and_pcd_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--cd", "--pcd", "--out", str(tmp_path / "x.safetensors")])
    assert info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_tempering_reaches_the_rbm_trainer_or_is_refused_plainly(folder, tmp_path, capsys):
    from dataclasses import fields

    from models.rbm_trainer import RBMTrainConfig

    ckpt = tmp_path / "pt.safetensors"
    rc = main(["train", str(folder), "--size", "16", "--hidden", "16", "--epochs", "1", "--seed", "1",
               "--tempering", "3", "--chains", "12", "--out", str(ckpt)])
    err = capsys.readouterr().err
    if "tempering" not in {f.name for f in fields(RBMTrainConfig)}:
        assert rc == 2 and "RBMTrainConfig has no 'tempering'" in err
        return
    assert rc == 0 and "PCD-1, 12 chains*, tempered over 3 replicas*" in settings_line(err)
    cfg = load_checkpoint(ckpt).meta["trainer"]["train_config"]
    assert (cfg["tempering"], cfg["n_chains"], cfg["persistent"]) == (3, 12, True)
    assert main(["train", str(folder), "--cd", "--tempering", "3", "--out", str(tmp_path / "x.safetensors"), "-q"]) == 2
    assert "with --cd there are none" in capsys.readouterr().err


def test_hybrid_and_vae_flags_reach_their_configs(folder, tmp_path, capsys):
    hyb = tmp_path / "h.safetensors"
    assert main(["train", str(folder), "--model", "hybrid", "--latent", "8", "--hidden", "12", "--epochs", "1", "--seed", "1",
                 "--k", "3", "--chains", "20", "--momentum", "0.7", "--weight-decay", "0.001", "--rbm-epochs", "2",
                 "--out", str(hyb)]) == 0
    text = settings_line(capsys.readouterr().err)
    phase1, phase2 = text.splitlines()
    assert "30 images 1×28×28, phase 1, the autoencoder: latent 8* (conv width" in phase1 and "1 epoch* = " in phase1
    assert phase2.startswith("  phase 2, the RBM on its codes: 8 visible × 12 hidden* · PCD-3*, 20 chains*, tempered over 10 replicas · ")
    assert "momentum 0.5→0.7*" in phase2 and "weight decay 0.001*" in phase2 and "2 epochs* = 6 updates" in phase2
    cfg = load_checkpoint(hyb).meta["trainer"]["train_config"]
    assert {k: cfg[k] for k in ("rbm_k", "rbm_n_chains", "rbm_final_momentum", "rbm_weight_decay", "rbm_epochs", "ae_epochs")} == \
        {"rbm_k": 3, "rbm_n_chains": 20, "rbm_final_momentum": 0.7, "rbm_weight_decay": 0.001, "rbm_epochs": 2, "ae_epochs": 1}

    vae = tmp_path / "v.safetensors"
    assert main(["train", str(folder), "--model", "vae", "--latent", "8", "--epochs", "1", "--seed", "1",
                 "--beta", "4", "--out", str(vae)]) == 0
    line = settings_line(capsys.readouterr().err)
    assert "30 images 1×28×28: latent 8* (conv width" in line and "· β 4* · bernoulli likelihood · adam lr " in line
    assert load_checkpoint(vae).model.config.beta == 4.0
    more = tmp_path / "v2.safetensors"  # a resumed VAE takes a new β through its training config
    assert main(["train", str(folder), "--resume", str(vae), "--epochs", "2", "--beta", "2", "--out", str(more)]) == 0
    assert "· β 2* ·" in settings_line(capsys.readouterr().err)
    assert load_checkpoint(more).meta["trainer"]["train_config"]["beta"] == 2.0


def interrupt_after(monkeypatch, events: int) -> None:
    """The next training run gets a real SIGINT (Ctrl+C) after `events` events."""
    import signal

    import models.factory

    build = models.factory.build

    def build_and_wrap(*a, **k):
        trainer = build(*a, **k)
        run = trainer.run

        def interrupted():
            for i, ev in enumerate(run()):
                yield ev
                if i + 1 == events:
                    os.kill(os.getpid(), signal.SIGINT)

        trainer.run = interrupted
        return trainer

    monkeypatch.setattr(models.factory, "build", build_and_wrap)


@pytest.mark.skipif(os.name != "posix", reason="a real SIGINT")
def test_hybrid_epochs_mean_the_autoencoder_phase_fresh_and_resumed(folder, tmp_path, capsys, monkeypatch):
    hyb = ["--model", "hybrid", "--latent", "8", "--hidden", "12", "--batch-size", "10", "--seed", "1", "-q"]
    stopped = tmp_path / "stopped.safetensors"
    interrupt_after(monkeypatch, 2)  # Ctrl+C in the autoencoder phase (3 updates an epoch)
    assert main(["train", str(folder), *hyb, "--epochs", "1", "--rbm-epochs", "1", "--out", str(stopped)]) == 130
    monkeypatch.undo()
    ck = load_checkpoint(stopped)
    assert ck.meta["trainer"]["step"] == 2 and ck.meta["trainer"]["extra"]["phase"] == 1
    more = tmp_path / "more.safetensors"  # --epochs 2: two autoencoder epochs, as on a fresh run
    assert main(["train", str(folder), "--resume", str(stopped), "--epochs", "2", "--out", str(more), "-q"]) == 0
    cfg = load_checkpoint(more).meta["trainer"]["train_config"]
    assert (cfg["ae_epochs"], cfg["rbm_epochs"], cfg["epochs"]) == (2, 1, 3)
    phases = [h["phase"] for h in load_checkpoint(more).history]
    assert phases == [1.0, 1.0, 2.0]
    capsys.readouterr()
    assert main(["train", str(folder), "--resume", str(more), "--epochs", "4", "--out", str(tmp_path / "x.safetensors"), "-q"]) == 2
    assert ("--epochs 4: the autoencoder phase of more.safetensors is over (it ran 2 epochs); give its RBM phase "
            "more epochs with --rbm-epochs") in capsys.readouterr().err
    last = tmp_path / "last.safetensors"
    assert main(["train", str(folder), "--resume", str(more), "--epochs", "2", "--rbm-epochs", "2", "--out", str(last), "-q"]) == 0
    cfg = load_checkpoint(last).meta["trainer"]["train_config"]
    assert (cfg["ae_epochs"], cfg["rbm_epochs"], cfg["epochs"]) == (2, 2, 4)
    assert len(load_checkpoint(last).history) == 4
    train_help = " ".join(subparser_help("train").split())
    assert "For the hybrid, always its autoencoder phase's (a resumed hybrid's too)" in train_help


def subparser_help(name: str) -> str:
    p = parser()
    action = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name].format_help()


@pytest.mark.skipif(os.name != "posix", reason="file names as bytes")
def test_scan_survives_odd_names_on_a_strict_utf8_stdout(tmp_path):
    odd = tmp_path / "odd"
    odd.mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(os.path.join(os.fsencode(odd), b"\xff\xfe.png"))
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(odd / "new\nline.png")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    text = subprocess.run([sys.executable, str(ROOT / "main.py"), "scan", str(odd), "--size", "16"], capture_output=True, env=env, timeout=120)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.decode("utf-8").splitlines()  # strict: valid UTF-8
    assert f"  {odd}/\\xff\\xfe.png  PNG 16×16 L" in lines and f"  {odd}/new\\nline.png  PNG 16×16 L" in lines
    js = subprocess.run([sys.executable, str(ROOT / "main.py"), "scan", str(odd), "--json", "--size", "16"], capture_output=True, env=env, timeout=120)
    assert js.returncode == 0, js.stderr
    report = json.loads(js.stdout.decode("utf-8"))
    assert sorted(a["path"] for a in report["accepted"]) == sorted([f"{odd}/new\nline.png", f"{odd}/\\xff\\xfe.png"])
