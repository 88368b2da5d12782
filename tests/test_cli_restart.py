"""`harmonium train --restart N`: PCD's chains restarting from noise in turn (the Gaussian RBM's
default on large images, `models.kinds.default_restart`), printed with the other settings,
saved in the checkpoint, and refused where there are no persistent chains to restart."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.checkpoint import load_checkpoint
from studio.cli import main


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """12 colour 48×48 images of smooth random blobs (48·48·3 = 6,912 values: above 4,096)."""
    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:48, :48]
    for i in range(12):
        cy, cx = rng.uniform(8, 40, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(4, 12) ** 2))
        rgb = (blob[..., None] * rng.uniform(80, 255, 3) + rng.uniform(0, 60, 3)).clip(0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(d / f"p{i:02d}.png")
    return d


def _settings(err: str) -> str:
    return next(line for line in err.splitlines() if line.startswith("training "))


def _train(photos: Path, out: Path, *flags: str) -> int:
    return main(["train", str(photos), "--model", "grbm", "--size", "48", "--color", "--hidden", "8",
                 "--epochs", "1", "--seed", "0", "--out", str(out), *flags])


def test_a_grbm_on_large_colour_images_restarts_its_chains_by_default_and_says_so(photos, tmp_path, capsys):
    assert _train(photos, tmp_path / "a.safetensors") == 0
    line = _settings(capsys.readouterr().err)
    assert "each restarted from noise every 100 updates" in line and "updates*" not in line  # a default: no star
    assert load_checkpoint(tmp_path / "a.safetensors").meta["trainer"]["train_config"]["restart_every"] == 100


def test_restart_given_is_taken_and_marked(photos, tmp_path, capsys):
    assert _train(photos, tmp_path / "b.safetensors", "--restart", "7") == 0
    assert "each restarted from noise every 7 updates*" in _settings(capsys.readouterr().err)
    assert load_checkpoint(tmp_path / "b.safetensors").meta["trainer"]["train_config"]["restart_every"] == 7
    assert _train(photos, tmp_path / "c.safetensors", "--restart", "0") == 0
    assert "restarted" not in _settings(capsys.readouterr().err)
    assert load_checkpoint(tmp_path / "c.safetensors").meta["trainer"]["train_config"]["restart_every"] == 0


def test_tempered_chains_keep_theirs_and_cd_has_none_to_restart(photos, tmp_path, capsys):
    # --tempering alone: the default restarts give way (tempered chains are not restarted)
    assert _train(photos, tmp_path / "d.safetensors", "--tempering", "3") == 0
    line = _settings(capsys.readouterr().err)
    assert "tempered over 3 replicas*" in line and "restarted" not in line
    assert load_checkpoint(tmp_path / "d.safetensors").meta["trainer"]["train_config"]["restart_every"] == 0
    # --cd alone trains; --cd with --restart is refused in one sentence, nothing written
    assert _train(photos, tmp_path / "e.safetensors", "--cd") == 0
    capsys.readouterr()
    assert _train(photos, tmp_path / "f.safetensors", "--cd", "--restart", "5") == 2
    err = capsys.readouterr().err.strip()
    assert "--restart restarts PCD's persistent chains; with --cd there are none" in err and "Traceback" not in err
    assert not (tmp_path / "f.safetensors").exists()
    assert _train(photos, tmp_path / "g.safetensors", "--restart", "-1") == 2
    assert "--restart must be 0 (never) or a number of updates (got -1)" in capsys.readouterr().err
