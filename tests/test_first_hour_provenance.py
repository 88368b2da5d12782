"""Issue 16, item 9: layers made by models the studio trained (a VAE and a hybrid here) name
the checkpoint that made them once the project is saved: every layer's ``checkpoint_sha256``
in the saved project is the SHA-256 of the model file stored in it (headless, no Qt)."""
from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.canvas import sources
from studio.dataset import Preprocess
from studio.jobs import JobState, Session


@pytest.fixture
def doc(tmp_path: Path) -> Session:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        a = np.zeros((28, 28), np.uint8)
        a[:, :: 2 + i % 3] = 220
        a = np.clip(a.astype(int) + rng.integers(0, 30, a.shape), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(folder / f"im{i:02d}.png")
    doc = Session(Preprocess(size=28))
    doc.open_images([str(folder)])
    return doc


def train(doc: Session, kind: str, params: dict):
    job = doc.new_job(kind, {"batch_size": 4, "seed": 1, **params})
    job.start()
    for _ in job.iterate():
        pass
    assert job.state is JobState.DONE, job.error
    return job


def test_layers_of_studio_trained_vae_and_hybrid_name_their_checkpoint_once_saved(doc, tmp_path):
    vae = train(doc, "vae", {"latent": 4, "epochs": 2})
    hybrid = train(doc, "hybrid", {"latent": 4, "n_hidden": 8, "epochs": 1, "rbm_epochs": 1, "n_chains": 4})
    made_by: dict[str, object] = {}  # layer id -> its job

    def add(layer, job):
        made_by[doc.add_layer(layer).id] = job

    # the canvas's "From a Model…" (a frame, a texture), as the studio makes them
    add(sources.sample_frame(vae.model, seed=3), vae)
    add(sources.sample_frame(hybrid.model, seed=4, steps=2), hybrid)
    add(sources.rbm_texture(hybrid.model, steps=2, seed=5), hybrid)
    # the Latent tab's frame and strip name their run (job_id), not its weights
    frame = (np.random.default_rng(1).random((28, 28)) * 255).astype(np.uint8)
    made_by[doc.add_snapshot_layer(np.dstack([frame] * 3 + [np.full_like(frame, 255)]),
                                   {"source": "model-frame", "model": "vae", "job_id": vae.id}).id] = vae
    strip = sources.interpolation_strip([frame, frame[::-1]], {"model": "hybrid", "job_id": hybrid.id})
    add(strip, hybrid)
    # the Dreams tab dreaming freely over a copy of the hybrid
    dreams = doc.dream(sources.detach_model(hybrid.model, hybrid.step_lock), {"kind": "hybrid", "job_id": hybrid.id},
                       n_chains=4, seed=5)
    assert dreams.step() is not None
    rgba, prov = doc.dream_snapshot()
    made_by[doc.add_snapshot_layer(rgba, prov).id] = hybrid
    # a layer of weights that no model of the project holds (the VAE as it was before
    # training on, say) keeps no checkpoint hash
    stranger = sources.sample_frame(_changed_copy(vae.model), seed=1)
    doc.add_layer(stranger)
    assert all(layer.provenance.get("checkpoint_sha256") is None for layer in doc.canvas.layers)

    out = doc.save_project(tmp_path / "first-hour.harmonium")

    with zipfile.ZipFile(out) as zf:
        manifest = json.loads(zf.read("project.json"))
        file_sha = {m["name"]: hashlib.sha256(zf.read(m["file"])).hexdigest() for m in manifest["models"]}
    by_job = {job.id: file_sha[f"{job.kind}-{job.id}"] for job in (vae, hybrid)}
    assert len(set(by_job.values())) == 2
    again = Session()
    again.open_project(out)
    layers = {layer.id: layer for layer in again.canvas.layers}
    assert len(layers) == len(made_by) + 1
    for layer_id, job in made_by.items():
        prov = layers[layer_id].provenance
        assert prov["checkpoint_sha256"] == by_job[job.id], (prov.get("source"), job.kind)
    assert layers[stranger.id].provenance["checkpoint_sha256"] is None
    # the opened runs are the checkpoints the layers name: a dropped export finds its model
    assert {job.checkpoint.sha256 for job in again.jobs} == set(by_job.values())


def _changed_copy(model):
    """A copy of ``model`` with one weight changed: weights no model of the project holds."""
    import copy

    import torch

    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.parameters()).add_(0.5)
    return other
