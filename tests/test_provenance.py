"""Provenance (issue 16, item 9, and the drop-back): the seed a random run used, the weights'
hash of a model trained in the studio, interpolation file names, and reading a dropped PNG back
at the boundary (one sentence for anything damaged)."""
from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from studio.canvas.export import layer_provenance, read_provenance, save_png
from studio.canvas.sources import rbm_texture, sample_frame, weights_sha256
from studio.provenance import ProvenanceError, find_origin, read_studio_png, summary_lines


def tiny_rbm(seed: int = 0):
    from models.rbm import BernoulliRBM, RBMConfig

    torch.manual_seed(seed)
    return BernoulliRBM(RBMConfig(n_visible=36, n_hidden=8, image_shape=(1, 6, 6)))


def tiny_vae(seed: int = 0):
    from models.vae import ConvVAE, VAEConfig

    torch.manual_seed(seed)
    return ConvVAE(VAEConfig(image_size=28, latent=4, width=4))


class Job:
    """The parts of a TrainingJob that find_origin reads."""

    def __init__(self, model, checkpoint=None):
        self.model, self.checkpoint, self.step_lock, self.id, self.title = model, checkpoint, None, 1, "RBM"


def test_a_random_seed_run_records_the_seed_it_used_and_makes_the_same_layer_again():
    model = tiny_rbm()
    layer = rbm_texture(model, steps=5, seed=None, tiling=None)
    seed = layer.provenance["seed"]
    assert isinstance(seed, int) and 0 <= seed < 2**31
    again = rbm_texture(model, steps=5, seed=seed, tiling=None)
    np.testing.assert_array_equal(np.asarray(again.source), np.asarray(layer.source))
    frame = sample_frame(tiny_vae(), seed=None)
    assert isinstance(frame.provenance["seed"], int)


def test_dreams_without_a_seed_record_the_one_drawn():
    from studio.dreams import DreamSession

    session = DreamSession.from_model(tiny_rbm(), n_chains=4)
    assert isinstance(session.seed, int)
    frame = session.step()
    assert session.provenance(frame)["seed"] == session.seed


def test_layers_from_models_trained_here_name_their_weights():
    vae, other = tiny_vae(0), tiny_vae(1)
    prov = sample_frame(vae, seed=3).provenance
    assert prov["weights_sha256"] == weights_sha256(vae) != weights_sha256(other)
    assert len(prov["weights_sha256"]) == 64
    with torch.no_grad():
        next(vae.parameters()).add_(1e-3)  # trained on: another model
    assert weights_sha256(vae) != prov["weights_sha256"]
    rbm = tiny_rbm()
    assert rbm_texture(rbm, steps=1, seed=0).provenance["weights_sha256"] == weights_sha256(rbm)


def test_find_origin_by_checkpoint_then_by_weights(tmp_path):
    rbm, other = tiny_rbm(0), tiny_rbm(1)
    layer = rbm_texture(rbm, steps=2, seed=7, tiling="mirror")
    prov = dict(layer.provenance)
    origin = find_origin(prov, [Job(other), Job(rbm)])
    assert origin.job.model is rbm and origin.matched_by == "weights" and origin.can_make_again

    class Ckpt:
        sha256 = "ab" * 32

    opened = Job(other, Ckpt())
    origin = find_origin({**prov, "checkpoint_sha256": "ab" * 32}, [Job(rbm), opened])
    assert origin.job is opened and origin.matched_by == "checkpoint"
    # not in the session: a checkpoint file that still has the recorded hash is offered
    from models.checkpoint import file_sha256

    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"weights")
    origin = find_origin({"checkpoint_sha256": file_sha256(ckpt), "checkpoint": str(ckpt)}, [])
    assert origin.job is None and origin.checkpoint_file == ckpt
    ckpt.write_bytes(b"trained on since")
    origin = find_origin({"checkpoint_sha256": "cd" * 32, "checkpoint": str(ckpt)}, [])
    assert origin.checkpoint_file is None and "no longer" in origin.notes[0]


def test_read_studio_png_round_trips_and_ignores_ordinary_images(tmp_path):
    prov = {"model": "rbm", "source": "texture", "seed": 7, "steps": 2, "temperature": 1.0,
            "weights_sha256": "0f" * 32, "checkpoint_sha256": None}
    path = save_png(tmp_path / "a.png", np.zeros((4, 4, 4), np.uint8), prov)
    assert read_studio_png(path) == prov == read_provenance(path)
    assert any(line.startswith("Settings: seed 7, steps 2") for line in summary_lines(prov))
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "plain.png")
    assert read_studio_png(tmp_path / "plain.png") is None
    (tmp_path / "notes.png").write_text("not a png at all")
    assert read_studio_png(tmp_path / "notes.png") is None


def _png_with(tmp_path, text: str | bytes, name="bad.png", key="harmonium"):
    info = PngInfo()
    if isinstance(text, bytes):
        info.add(b"zTXt", key.encode() + b"\0\0" + zlib.compress(text))
    else:
        info.add_itxt(key, text)
    path = tmp_path / name
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(path, pnginfo=info)
    return path


@pytest.mark.parametrize("text, words", [
    ("{not json", "not readable JSON"),
    ("[1, 2, 3]", "not a set of named fields"),
    ('{"seed": -4}', "seed that is not a whole number"),
    ('{"seed": true}', "seed that is not a whole number"),
    ('{"temperature": "hot"}', "temperature that is not a positive number"),
    ('{"temperature": NaN}', "temperature that is not a positive number"),
    ('{"checkpoint_sha256": "abc"}', "checkpoint_sha256 that is not a SHA-256 hash"),
    ('{"model": 12}', "model that is not text"),
    ("[" * 100_000 + "]" * 100_000, "not readable JSON"),
])
def test_damaged_provenance_is_refused_in_one_sentence(tmp_path, text, words):
    path = _png_with(tmp_path, text)
    with pytest.raises(ProvenanceError) as info:
        read_studio_png(path)
    message = str(info.value)
    assert words in message and message.startswith("bad.png") and "\n" not in message


def test_a_truncated_or_corrupt_png_is_refused_in_one_sentence(tmp_path):
    good = save_png(tmp_path / "g.png", (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8),
                    {"seed": 1}).read_bytes()
    rng = np.random.default_rng(5)
    outcomes = set()
    for i in range(40):  # truncations and flipped bytes: refused or read, never anything else
        data = bytearray(good[: rng.integers(8, len(good))] if i % 2 else good)
        if i % 2 == 0:
            for _ in range(4):
                data[rng.integers(8, len(data))] ^= 0xFF
        path = tmp_path / f"f{i}.png"
        path.write_bytes(bytes(data))
        try:
            got = read_studio_png(path)
            outcomes.add("read" if got is not None else "none")
        except ProvenanceError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(f"f{i}.png")
            outcomes.add("refused")
    assert "refused" in outcomes


def test_layer_exports_carry_what_make_again_needs():
    from studio.canvas import Canvas

    canvas = Canvas(16, 16)
    layer = canvas.add_layer(rbm_texture(tiny_rbm(), steps=2, seed=9, tiling="plain", scale=2.0))
    prov = json.loads(json.dumps(layer_provenance(canvas, layer)))
    assert prov["seed"] == 9 and prov["steps"] == 2 and prov["blend"]["tiling"] == "plain"
    assert prov["blend"]["scale"] == 2.0 and prov["weights_sha256"]
