"""The command line end to end on a small folder: train, sample, eval, scan, resume, divergence."""
from __future__ import annotations

import json
import math
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
from studio.cli import main, make_grid

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
    assert np.array_equal(grid, make_grid(tiles[..., None])[..., 0])
    info = Image.open(out / "grid.png").text
    assert info["harmonium:model"] == "rbm" and info["harmonium:checkpoint_sha256"] == ck.sha256 and info["harmonium:steps"] == "30"

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
