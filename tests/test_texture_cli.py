"""The texture RBM from the command line (issue 15): `harmonium train IMAGE --model texture`
on one small texture file (and on a folder holding only it), resuming, and `harmonium sample
CKPT --width W --height H` writing seamless PNGs of that size, with the sizes and kinds it
refuses in one sentence."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from models.checkpoint import load_checkpoint, save_checkpoint
from models.conv_rbm import seam_ratio
from models.rbm import BernoulliRBM, RBMConfig
from studio.canvas.export import PROVENANCE_KEY
from studio.cli import main

PERIOD = 6


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Tiny models: one torch thread is fastest and steadiest on a busy machine."""
    monkeypatch.setenv("HARMONIUM_TORCH_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def texture_png(tmp_path_factory):
    """One 48×48 grey texture: diagonal stripes of period 6 px with a little noise."""
    folder = tmp_path_factory.mktemp("texture")
    y, x = np.mgrid[0:48, 0:48]
    rng = np.random.default_rng(0)
    img = 0.5 + 0.35 * np.sin(2 * math.pi * (x + y) / PERIOD) + 0.05 * rng.standard_normal((48, 48))
    path = folder / "stripes.png"
    Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(path)
    return path


def train(source, out, *extra) -> int:
    """A short texture run (one epoch: 100 steps of 8 crops, PCD-1 on two chains, 4 filters)."""
    return main(["train", str(source), "--model", "texture", "--size", "32", "--hidden", "4", "--epochs", "1",
                 "--short-run", "0", "--k", "1", "--chains", "2", "--seed", "0", "--out", str(out), "-q", *extra])


@pytest.fixture(scope="module")
def trained(texture_png, tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("ckpt") / "texture.safetensors"
    assert train(texture_png, ckpt) == 0
    return ckpt


def test_train_on_one_image_file_then_resume(trained, texture_png, tmp_path, capsys):
    ck = load_checkpoint(trained)
    assert ck.kind == "texture" and ck.model.n_filters == 4 and ck.model.config.image_shape == (1, 32, 32)
    assert ck.preprocess["size"] == 32 and ck.meta["trainer"]["step"] == 100
    assert ck.meta["trainer"]["train_config"]["n_chains"] == 2 and ck.meta["trainer"]["train_config"]["k"] == 1
    again = tmp_path / "more.safetensors"
    assert main(["train", str(texture_png), "--resume", str(trained), "--epochs", "2", "--out", str(again), "-q"]) == 0
    resumed = load_checkpoint(again)
    assert resumed.meta["trainer"]["step"] == 200 and len(resumed.history) == 2
    assert not torch.equal(resumed.model.weight, ck.model.weight)
    capsys.readouterr()
    assert main(["train", str(texture_png), "--resume", str(trained), "--hidden", "8", "--out", str(again), "-q"]) == 2
    assert "has 4 filters" in capsys.readouterr().err


def test_a_folder_of_one_image_trains_and_the_settings_are_said(texture_png, tmp_path, capsys):
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "t.png").write_bytes(texture_png.read_bytes())
    out = tmp_path / "t.safetensors"
    assert main(["train", str(folder), "--model", "texture", "--size", "24", "--hidden", "3", "--epochs", "1",
                 "--short-run", "0", "--k", "1", "--chains", "2", "--seed", "1", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "1 images from" in err
    assert "1×24×24: 3 filters* 9×9, max-pooled 2×2 · PCD-1*, 2 chains*" in err and "8 crops of 24 px a step" in err
    assert load_checkpoint(out).model.config.image_shape == (1, 24, 24)


def test_sample_writes_seamless_pngs_of_the_size_asked(trained, tmp_path, capsys):
    out = tmp_path / "textures"
    assert main(["sample", str(trained), "--width", "96", "--height", "64", "--n", "2", "--steps", "6",
                 "--seed", "3", "--out", str(out), "-q"]) == 0
    assert "wrote 2 seamless 96×64 textures" in capsys.readouterr().out
    files = sorted(out.glob("sample_*.png"))
    assert [f.name for f in files] == ["sample_0000.png", "sample_0001.png"]
    pixels = []
    for i, f in enumerate(files):
        with Image.open(f) as im:
            assert im.size == (96, 64) and im.mode == "L"
            prov = json.loads(im.text[PROVENANCE_KEY])
            pixels.append(np.asarray(im, dtype=np.float32) / 255)
        assert prov["model"] == "texture" and prov["seed"] == 3 + i and prov["steps"] == 6
        assert (prov["width"], prov["height"], prov["seamless"]) == (96, 64, True)
    x = torch.from_numpy(np.stack(pixels))[:, None]
    assert x.std() > 0.05  # a texture, not a flat grey
    assert seam_ratio(x) < 1.25  # the wrap-around edge differs no more than interior neighbours
    with Image.open(out / "grid.png") as grid:
        assert grid.size[1] == 64 + 2 * 2  # two textures side by side, with the grid's padding
    # the same seed, the same texture
    again = tmp_path / "again"
    assert main(["sample", str(trained), "--width", "96", "--height", "64", "--n", "1", "--steps", "6",
                 "--seed", "3", "--out", str(again), "-q"]) == 0
    with Image.open(again / "sample_0000.png") as im:
        assert np.array_equal(np.asarray(im, dtype=np.float32) / 255, pixels[0])


@pytest.mark.parametrize("flags, message", [
    (["--width", "32"], "--width must be 64 to 2,048 pixels (got 32)"),
    (["--width", "128", "--height", "4096"], "--height must be 64 to 2,048 pixels (got 4096)"),
    (["--width", "65"], "--width and --height must be multiples of 2 for this model"),
    (["--n", "0"], "--n must be 1 to 4,096 samples (got 0)"),
])
def test_sizes_it_cannot_draw_are_refused_in_one_sentence(trained, tmp_path, capsys, flags, message):
    out = tmp_path / "none"
    assert main(["sample", str(trained), *flags, "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not out.exists()


def test_width_and_height_are_refused_for_a_kind_that_dreams_at_its_own_size(tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "rbm.safetensors", BernoulliRBM(RBMConfig(16, 4, image_shape=(1, 4, 4))))
    assert main(["sample", str(ckpt), "--width", "256", "--out", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("harmonium: --width and --height apply to texture models only: a rbm model dreams at its "
                   "training images' size (4×4)")


def test_short_runs_are_the_default_and_pcd_flags_need_them_off(texture_png, tmp_path, capsys):
    """The texture RBM trains on short runs from noise by default (said in the settings line);
    PCD's flags while they are on are refused in one sentence, nothing trained or written."""
    out = tmp_path / "sr.safetensors"
    assert main(["train", str(texture_png), "--model", "texture", "--size", "24", "--hidden", "3", "--epochs", "1",
                 "--seed", "2", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "short runs from noise (1 chain of 40 sweeps a step)" in err and "PCD" not in err
    assert load_checkpoint(out).meta["trainer"]["train_config"]["short_run"] == 1
    refused = tmp_path / "no.safetensors"
    assert main(["train", str(texture_png), "--model", "texture", "--chains", "4", "--out", str(refused)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--chains sets PCD's or CD's chains" in err and "--short-run 0" in err and len(err.splitlines()) == 1
    assert not refused.exists()


def test_a_checkpoint_saved_before_short_runs_resumes_by_pcd(trained):
    """A saved training config without `short_run` predates short runs: the run trained by PCD
    and resumes so (`ConvRBMTrainConfig.SAVED_DEFAULTS`), not by the new default."""
    ck = load_checkpoint(trained)
    saved = ck.meta["trainer"]["train_config"]
    assert saved["short_run"] == 0
    del saved["short_run"]
    images = torch.randint(0, 256, (1, 1, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    trainer = ck.make_trainer(images, "cpu")
    assert trainer.config.short_run == 0 and trainer.config.k == 1 and trainer.config.n_chains == 2
