"""Projects (studio.project): one ``.harmonium`` zip for dataset reference, models and canvas.

Round trips (model tensors, layer settings and pixels, dataset reference, the composite), the
refusal of every kind of broken file with a clear message, and atomic saves. No Qt here; tiny
models and canvases, so the file runs in a few seconds.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import studio.project as project_mod
from models.checkpoint import CheckpointError
from models.factory import Options, build
from models.rbm import BernoulliRBM, RBMConfig
from studio.canvas import Canvas, GradientMap, Layer, Levels, Palette
from studio.dataset import Preprocess
from studio.jobs import Session, TrainingJob
from studio.project import (
    PROJECT_VERSION,
    DatasetRef,
    ProjectData,
    ProjectError,
    ProjectModel,
    layers_equal,
    open_project,
    project_from_session,
    read_manifest,
    save_project,
)

# ----------------------------------------------------------------------------- fixtures


def tiny_rbm(seed: int = 0) -> BernoulliRBM:
    torch.manual_seed(seed)
    model = BernoulliRBM(RBMConfig(n_visible=8 * 8, n_hidden=6, image_shape=(1, 8, 8)))
    with torch.no_grad():
        model.weight.normal_(0, 0.3)
        model.visible_bias.normal_(0, 0.1)
    return model


def tiny_trainer():
    """A binary RBM trainer that has taken a few steps (so it has resumable state)."""
    data = (torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(3)) > 0.5).to(torch.uint8) * 255
    opts = Options(kind="rbm", image_shape=(1, 8, 8), hidden=5, epochs=2, batch_size=5, seed=2, n_chains=4,
                   frame_every=0)
    trainer = build(opts, data, "cpu")
    run = trainer.run()
    for _ in range(3):
        next(run)
    run.close()
    return trainer


def make_canvas() -> Canvas:
    rng = np.random.default_rng(5)
    canvas = Canvas(40, 32, background=(0.95, 0.9, 0.85, 1.0))
    texture = canvas.add_layer(Layer(name="texture", source=(rng.random((6, 6)) * 255).astype(np.uint8),
                                     tiling="mirror", scale=2.5, resample="bicubic",
                                     colourise=GradientMap(((0, (0.1, 0.0, 0.2)), (0.5, (0.9, 0.4, 0.1)), (1, (1, 1, 0.8)))),
                                     provenance={"source": "texture", "model": "rbm", "seed": 7, "steps": 300,
                                                 "temperature": 0.9, "checkpoint_sha256": "ab" * 32}))
    canvas.add_layer(Layer(name="rgba", source=(rng.random((9, 7, 4)) * 255).astype(np.uint8), x=-2, y=5,
                           blend_mode="multiply", opacity=0.55, levels=Levels(0.1, 0.9, 1.3, 0.05, 0.95)))
    canvas.add_layer(Layer(name="float frame", source=rng.random((5, 5, 3)).astype(np.float32), x=20, y=3, scale=3,
                           resample="nearest", blend_mode="screen", invert=True,
                           colourise=Palette(((0.1, 0.1, 0.3), (0.9, 0.8, 0.5), (1, 1, 1)))))
    frames = tuple((rng.random((4, 6, 2)) * 255).astype(np.uint8) for _ in range(3))
    canvas.add_layer(Layer(name="animated", frames=frames, frame_index=1, x=3, y=20, blend_mode="soft-light"))
    canvas.add_layer(Layer(name="hidden gray+alpha", source=(rng.random((3, 3, 2)) * 255).astype(np.uint8),
                           visible=False, blend_mode="difference", tiling="plain"))
    canvas.duplicate_layer(texture.id, name="texture copy")
    canvas.set_layer(canvas.layers[1].id, blend_mode="overlay", opacity=0.4, x=4)
    return canvas


@pytest.fixture
def canvas() -> Canvas:
    return make_canvas()


@pytest.fixture
def project(canvas, tmp_path) -> ProjectData:
    (tmp_path / "images").mkdir()
    dataset = DatasetRef(sources=[str(tmp_path / "images")],
                         preprocess=Preprocess(size=16, color=True, crop="fit").to_dict(),
                         paths=[str(tmp_path / "images" / "a.png")], count=1)
    trainer = tiny_trainer()
    models = [
        ProjectModel("rbm-1", "rbm", "Binary RBM", model=tiny_rbm(), preprocess={"size": 8}, meta={"note": "plain"}),
        ProjectModel("rbm-2", "rbm", "Binary RBM (training)", model=trainer.model, trainer=trainer),
    ]
    return ProjectData(canvas=canvas, dataset=dataset, models=models)


@pytest.fixture
def saved(project, tmp_path) -> Path:
    return save_project(tmp_path / "art.harmonium", project)


def rewrite(src: Path, dst: Path, *, drop: set[str] = frozenset(), replace: dict[str, bytes] | None = None,
            manifest=None) -> Path:
    """Copy a project's zip with members dropped / replaced, or the manifest edited by ``manifest(dict)``."""
    replace = dict(replace or {})
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            data = replace.get(info.filename, zin.read(info))
            if info.filename == "project.json" and manifest is not None:
                m = json.loads(data)
                manifest(m)
                data = json.dumps(m).encode()
            zout.writestr(info.filename, data)
    return dst


# ----------------------------------------------------------------------------- round trips


def test_round_trip_keeps_models_canvas_dataset_and_composite(project, saved, canvas):
    opened = open_project(saved)
    # models: every tensor equal, kinds and titles kept
    assert [m.name for m in opened.models] == ["rbm-1", "rbm-2"]
    for before, after in zip(project.models, opened.models):
        assert after.kind == "rbm" and after.title == before.title
        a, b = before.model.state_dict(), after.model.state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k].cpu(), b[k]) for k in a)
        assert after.path is not None and after.path.is_file() and len(after.sha256) == 64
    assert opened.models[0].meta == {"note": "plain"}
    assert opened.models[0].checkpoint.preprocess == {"size": 8}
    # the training state came along: the second model can resume
    assert opened.models[1].checkpoint.meta["trainer"]["step"] == project.models[1].trainer.step
    assert opened.models[1].checkpoint.trainer_tensors
    # canvas: size, background, every layer's settings and pixels
    got = opened.canvas
    assert (got.width, got.height, got.background) == (canvas.width, canvas.height, canvas.background)
    assert layers_equal(canvas.layers, got.layers)
    for a, b in zip(canvas.layers, got.layers):
        assert a.id == b.id and a.name == b.name
        assert a.colourise == b.colourise and a.levels == b.levels
        assert a.source.dtype == b.source.dtype and np.array_equal(a.source, b.source)
        assert dict(a.provenance) == dict(b.provenance)
    assert not got.can_undo  # a fresh history
    # layers sharing pixels still share them (stored once)
    assert got.layers[0].source is got.layers[1].source
    # the composite renders identically
    assert np.array_equal(got.render_uint8(), canvas.render_uint8())
    # dataset reference and preprocessing
    assert opened.dataset == project.dataset.__class__(**{**project.dataset.__dict__,
                                                         "sources_relative": ["images"]})
    assert Preprocess.from_dict(opened.dataset.preprocess) == Preprocess(size=16, color=True, crop="fit")
    assert opened.meta["format_version"] == PROJECT_VERSION


def test_archive_layout(saved):
    with zipfile.ZipFile(saved) as zf:
        names = zf.namelist()
        assert names[0] == "mimetype" and zf.read("mimetype") == b"application/x-harmonium-project"
        assert names[-1] == "project.json"
        assert {"models/rbm-1.safetensors", "models/rbm-2.safetensors", "thumbnail.png"} <= set(names)
        assert any(n.startswith("layers/") and n.endswith(".png") for n in names)
        assert any(n.endswith(".npy") for n in names)  # the float layer, stored exactly
        with Image.open(io.BytesIO(zf.read("thumbnail.png"))) as im:
            assert max(im.size) <= 256
    manifest = read_manifest(saved)
    assert manifest["format"] == "harmonium-project"
    assert set(manifest["files"]) == set(names) - {"mimetype", "project.json"}
    # layers' pixels are plain PNGs anyone can open
    layer = next(e for e in manifest["canvas"]["layers"] if e["name"] == "rgba")
    assert layer["source"]["file"].endswith(".png") and layer["source"]["shape"] == [9, 7, 4]


def test_no_pickle_anywhere(saved):
    with zipfile.ZipFile(saved) as zf:
        for name in zf.namelist():
            if name.endswith(".npy"):
                np.load(io.BytesIO(zf.read(name)), allow_pickle=False)  # loads without pickle


def test_session_round_trip_through_the_adapter(tmp_path, canvas):
    session = Session(Preprocess(size=16))
    session.sources = [str(tmp_path)]
    job = TrainingJob(model=tiny_rbm(1), kind="rbm", title="Binary RBM", preprocess={"size": 8}, source="tests")
    session.add_job(job)
    session.add_job(TrainingJob(make_trainer=lambda: None, kind="vae"))  # not built yet: no model, skipped
    data = project_from_session(session, canvas.snapshot(), renderer=canvas.renderer)
    assert [m.kind for m in data.models] == ["rbm"] and data.models[0].lock is job.step_lock
    path = save_project(tmp_path / "from-session", session, canvas)  # the (path, session, canvas) form
    assert path.name == "from-session.harmonium"
    opened = open_project(path)
    assert opened.dataset.sources == [str(tmp_path)]
    assert opened.dataset.preprocess == Preprocess(size=16).to_dict()
    assert opened.models[0].meta["source"] == "tests"
    assert torch.equal(opened.models[0].model.weight, job.model.weight)
    # a job can be made of the extracted checkpoint, as the main window does
    reopened = session.open_model(opened.models[0].path)
    assert reopened.kind == "rbm" and torch.equal(reopened.model.weight, job.model.weight)


def test_dataset_found_relative_to_a_moved_project(tmp_path, canvas):
    images = tmp_path / "work" / "images"
    images.mkdir(parents=True)
    ref = DatasetRef(sources=[str(images)], preprocess=Preprocess().to_dict())
    path = save_project(tmp_path / "work" / "p.harmonium", ProjectData(canvas=canvas, dataset=ref))
    moved = tmp_path / "moved"
    (tmp_path / "work").rename(moved)
    opened = open_project(moved / "p.harmonium")
    found, missing = opened.dataset.resolve(moved)
    assert found == [str((moved / "images").resolve())] and missing == []
    found, missing = opened.dataset.resolve(tmp_path)
    assert found == [] and missing == [str(images)]


def test_empty_canvas_and_demo_dataset(tmp_path):
    path = save_project(tmp_path / "empty.harmonium",
                        ProjectData(canvas=Canvas(8, 8, background=None), dataset=DatasetRef()))
    opened = open_project(path)
    assert opened.canvas.layers == () and opened.canvas.background is None
    assert opened.dataset.is_demo and opened.models == []


# ----------------------------------------------------------------------------- refusing broken files


def _truncate(saved: Path, out: Path) -> Path:
    data = saved.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    return out


def _random_bytes(saved: Path, out: Path) -> Path:
    out.write_bytes(np.random.default_rng(0).bytes(5000))
    return out


def _first_layer_png(saved: Path) -> str:
    return next(e["source"]["file"] for e in read_manifest(saved)["canvas"]["layers"] if "file" in e["source"])


def _tampered_png(saved: Path, out: Path) -> Path:
    """A valid PNG of the right size, but not the saved pixels: only the checksum can tell."""
    name = _first_layer_png(saved)
    with zipfile.ZipFile(saved) as zf, Image.open(io.BytesIO(zf.read(name))) as im:
        size, mode = im.size, im.mode
    buf = io.BytesIO()
    Image.new(mode, size, 0).save(buf, format="PNG")
    return rewrite(saved, out, replace={name: buf.getvalue()})


def _corrupt_model(saved: Path, out: Path) -> Path:
    """Garbage instead of a checkpoint, with a matching checksum: the checkpoint check must catch it."""
    junk = b"not a safetensors file at all"
    import hashlib

    def fix(m):
        m["files"]["models/rbm-1.safetensors"] = hashlib.sha256(junk).hexdigest()

    return rewrite(saved, out, replace={"models/rbm-1.safetensors": junk}, manifest=fix)


def _bit_flip(saved: Path, out: Path) -> Path:
    """One flipped byte inside a stored model: the zip's CRC catches it."""
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as zf:
        info = zf.getinfo("models/rbm-1.safetensors")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0x55
    out.write_bytes(bytes(data))
    return out


CASES = {
    "random bytes": (_random_bytes, "not a Harmonium project"),
    "truncated zip": (_truncate, "truncated"),
    "empty file": (lambda s, o: (o.write_bytes(b""), o)[1], "empty"),
    "missing file": (lambda s, o: o, "does not exist"),
    "no project.json": (lambda s, o: rewrite(s, o, drop={"project.json"}), "project.json is missing"),
    "bad JSON": (lambda s, o: rewrite(s, o, replace={"project.json": b"{\"format\": \"harmonium-pro"}),
                 "not valid JSON"),
    "another format": (lambda s, o: rewrite(s, o, manifest=lambda m: m.update(format="something-else")),
                       "not a Harmonium project"),
    "newer version": (lambda s, o: rewrite(s, o, manifest=lambda m: m.update(format_version=PROJECT_VERSION + 1)),
                      "newer Harmonium"),
    "missing model entry": (lambda s, o: rewrite(s, o, drop={"models/rbm-2.safetensors"}),
                            "model “Binary RBM (training)” is missing"),
    "corrupt model": (_corrupt_model, "model “Binary RBM” is damaged"),
    "flipped byte": (_bit_flip, "model “Binary RBM” is damaged"),
    "tampered layer PNG": (_tampered_png, "checksum does not match"),
    "missing layer PNG": (lambda s, o: rewrite(s, o, drop={_first_layer_png(s)}), "pixels of layer “texture” is missing"),
    "invalid layer settings": (lambda s, o: rewrite(s, o, manifest=lambda m: m["canvas"]["layers"][3].update(opacity=5)),
                               "layer “float frame” has invalid settings"),
    "canvas too big": (lambda s, o: rewrite(s, o, manifest=lambda m: m["canvas"].update(width=99999)),
                       "canvas settings are invalid"),
    "bad preprocess": (lambda s, o: rewrite(s, o, manifest=lambda m: m["dataset"]["preprocess"].update(size=3)),
                       "preprocessing is invalid"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_broken_projects_are_refused_with_a_clear_message(case, saved, tmp_path):
    make, words = CASES[case]
    bad = make(saved, tmp_path / "bad.harmonium")
    before = bad.read_bytes() if bad.exists() else None
    dirs_before = list(project_mod._EXTRACT_DIRS)
    with pytest.raises(ProjectError) as info:
        open_project(bad)
    message = str(info.value)
    assert message.startswith("Cannot open bad.harmonium: ")
    assert words in message, message
    assert "Traceback" not in message
    # nothing was changed or left behind
    assert (bad.read_bytes() if bad.exists() else None) == before
    assert project_mod._EXTRACT_DIRS == dirs_before


def test_the_intact_project_still_opens(saved):
    # the control for the cases above: the same helpers on an intact file open fine
    assert len(open_project(saved).canvas.layers) == 6


# ----------------------------------------------------------------------------- atomic saves


def test_failed_save_leaves_the_original_untouched(project, saved, monkeypatch):
    original = saved.read_bytes()
    calls = {"n": 0}
    real = project_mod._encode_pixels

    def flaky(a):
        calls["n"] += 1
        if calls["n"] == 3:  # mid-write: models and some layers are already in the archive
            raise OSError(28, "No space left on device")
        return real(a)

    monkeypatch.setattr(project_mod, "_encode_pixels", flaky)
    project.canvas.set_layer(project.canvas.layers[0].id, opacity=0.25)  # a change that would be saved
    with pytest.raises(OSError):
        save_project(saved, project)
    assert saved.read_bytes() == original
    assert sorted(p.name for p in saved.parent.iterdir()) == ["art.harmonium", "images"]  # no temp file left
    monkeypatch.setattr(project_mod, "_encode_pixels", real)
    assert open_project(saved).canvas.layers[0].opacity == 1.0


def test_a_model_that_cannot_be_saved_is_a_clear_error(project, saved, monkeypatch):
    original = saved.read_bytes()

    def refuse(*args, **kwargs):
        raise CheckpointError("cannot save a model of unknown kind 'mystery'")

    monkeypatch.setattr("models.checkpoint.save_checkpoint", refuse)
    with pytest.raises(ProjectError, match="“Binary RBM” could not be saved: cannot save a model of unknown kind"):
        save_project(saved, project)
    assert saved.read_bytes() == original
    assert [p.name for p in saved.parent.iterdir() if p.name.startswith(".")] == []


def test_saving_reads_models_under_their_lock(project, tmp_path):
    import threading

    class Lock:
        def __init__(self):
            self.inner = threading.Lock()
            self.entered = 0

        def __enter__(self):
            self.entered += 1
            return self.inner.__enter__()

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

    lock = Lock()
    project.models[0].lock = lock
    save_project(tmp_path / "locked", project)
    assert lock.entered == 1


def test_opened_untrained_checkpoint_is_copied_byte_for_byte(tmp_path, canvas):
    from models.checkpoint import save_checkpoint

    trainer = tiny_trainer()
    ckpt_path = save_checkpoint(tmp_path / "m.safetensors", trainer.model, trainer=trainer)
    session = Session()
    job = session.open_model(ckpt_path)
    session.add_job(job)
    path = save_project(tmp_path / "p", session, canvas)
    with zipfile.ZipFile(path) as zf:
        stored = zf.read(f"models/rbm-{job.id}.safetensors")
    assert stored == ckpt_path.read_bytes()  # its training state kept as it was
