"""Projects (studio.project): one ``.harmonium`` zip for dataset reference, models and canvas.

Round trips (model tensors, layer settings and pixels, dataset reference, the composite), the
refusal of every kind of broken file with a clear message, and atomic saves. No Qt here; tiny
models and canvases, so the file runs in a few seconds.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import threading
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import studio.project.reading as project_reading
import studio.project.saving as project_saving
from models.checkpoint import CheckpointError
from models.factory import Options, build
from models.rbm import BernoulliRBM, RBMConfig
from studio.canvas import Canvas, CanvasState, GradientMap, Layer, Levels, Palette
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


# Files that cannot open at all: the archive, its manifest or its canvas is broken.
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
    "canvas too big": (lambda s, o: rewrite(s, o, manifest=lambda m: m["canvas"].update(width=99999)),
                       "canvas settings are invalid"),
    "canvas size a string": (lambda s, o: rewrite(s, o, manifest=lambda m: m["canvas"].update(width="40")),
                             "canvas settings are invalid"),
    "files a list": (lambda s, o: rewrite(s, o, manifest=lambda m: m.update(files=[])), "'files' is missing"),
    "nested too deeply": (lambda s, o: rewrite(s, o, manifest=lambda m: m["meta"].update(deep=json.loads("[" * 200 + "]" * 200))),
                          "nested too deeply"),
    "JSON too deep to parse": (lambda s, o: rewrite(s, o, replace={"project.json": b"[" * 100_000 + b"]" * 100_000}),
                               "nested too deeply"),
    "an int of 10,000 digits": (lambda s, o: rewrite(s, o, replace={"project.json": b'{"format": ' + b"9" * 10_000 + b"}"}),
                                "not valid JSON"),
    "duplicate member names": (lambda s, o: _duplicate_member(s, o, "project.json"), "two files named 'project.json'"),
}


def _duplicate_member(saved: Path, out: Path, name: str) -> Path:
    """The archive with a second member of the same name (which one would count?)."""
    import warnings

    out.write_bytes(saved.read_bytes())
    with warnings.catch_warnings(), zipfile.ZipFile(out, "a") as zf:
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate
        zf.writestr(name, b"{}")
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_broken_projects_are_refused_with_a_clear_message(case, saved, tmp_path):
    make, words = CASES[case]
    bad = make(saved, tmp_path / "bad.harmonium")
    before = bad.read_bytes() if bad.exists() else None
    dirs_before = list(project_reading._EXTRACT_DIRS)
    with pytest.raises(ProjectError) as info:
        open_project(bad)
    message = str(info.value)
    assert message.startswith("Cannot open bad.harmonium: ")
    assert words in message, message
    assert "Traceback" not in message
    # nothing was changed or left behind
    assert (bad.read_bytes() if bad.exists() else None) == before
    assert project_reading._EXTRACT_DIRS == dirs_before


def test_the_intact_project_still_opens(saved):
    # the control for the cases above and below: the same helpers on an intact file open fine
    opened = open_project(saved)
    assert len(opened.canvas.layers) == 6 and len(opened.models) == 2 and opened.problems == []


def test_what_a_killed_studio_extracted_is_swept_at_the_next_start(saved, tmp_path, monkeypatch):
    """The models a project opens are extracted to a folder named with the studio's process id;
    after a kill -9 (simulated: that id belongs to no running process) the next start's sweep
    removes it, and never the folder of a studio that still runs."""
    import os
    import tempfile

    from models.atomic import WORK_DIR_RE, sweep_stale

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    open_project(saved)
    (mine,) = list(temp.iterdir())
    m = WORK_DIR_RE.fullmatch(mine.name)
    assert m and m[1] == "project" and int(m[2]) == os.getpid() and any(mine.iterdir())
    dead = temp / mine.name.replace(f"-{os.getpid()}-", "-999999999-")
    mine.rename(dead)
    open_project(saved)  # this studio's own folder, alive
    assert sweep_stale(temp) == [dead] and not dead.exists()
    assert len(list(temp.iterdir())) == 1


# ----------------------------------------------------------------------------- opening whatever it can


def _fix_sha(name: str, data: bytes):
    """A manifest edit that makes ``name``'s checksum match ``data`` (so only the deeper check can tell)."""
    import hashlib

    return lambda m: m["files"].__setitem__(name, hashlib.sha256(data).hexdigest())


def _huge_npy_header(saved: Path, out: Path) -> Path:
    """The float layer's .npy with a header declaring 100,000 × 100,000 pixels (np.load would
    allocate 120 GB before noticing the data is short); its checksum made to match."""
    name = next(e["source"]["file"] for e in read_manifest(saved)["canvas"]["layers"] if e["name"] == "float frame")
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (100_000, 100_000, 3)})
    data = buf.getvalue() + bytes(300)
    return rewrite(saved, out, replace={name: data}, manifest=_fix_sha(name, data))


def _unparsable_npy_header(saved: Path, out: Path) -> Path:
    """The float layer's .npy with a header numpy cannot tokenize (it raised tokenize.TokenError,
    found by the fuzz test); its checksum made to match."""
    name = next(e["source"]["file"] for e in read_manifest(saved)["canvas"]["layers"] if e["name"] == "float frame")
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (5, 5, 3), [".ljust(117) + b"\n"
    data = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(300)
    return rewrite(saved, out, replace={name: data}, manifest=_fix_sha(name, data))


def _bz2_model(saved: Path, out: Path) -> Path:
    """A model member compressed with bzip2 (whose inflation zipfile cannot bound): never read."""
    out.write_bytes(saved.read_bytes())
    with zipfile.ZipFile(saved) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            kind = zipfile.ZIP_BZIP2 if info.filename == "models/rbm-1.safetensors" else zipfile.ZIP_STORED
            zout.writestr(info.filename, zin.read(info), compress_type=kind)
    return out


def _edit(fn):
    return lambda s, o: rewrite(s, o, manifest=fn)


ALL_LAYERS = ["texture", "texture copy", "rgba", "float frame", "animated", "hidden gray+alpha"]
NOT_TEXTURE = ALL_LAYERS[2:]  # "texture copy" shares the pixels of "texture"

# Files that open without one part: the part is skipped and reported in one sentence each,
# everything else opens as saved.  (make, the problems in order (words each contains: a string
# or a tuple of strings), the models kept, the layers kept)
SKIPPED = {
    "missing model member": (lambda s, o: rewrite(s, o, drop={"models/rbm-2.safetensors"}),
                             ["Skipped the model “Binary RBM (training)”: it is missing from the project "
                              "(models/rbm-2.safetensors)."], ["rbm-1"], ALL_LAYERS),
    "corrupt model": (_corrupt_model, ["Skipped the model “Binary RBM”: it is damaged"], ["rbm-2"], ALL_LAYERS),
    "flipped byte in a model": (_bit_flip, ["Skipped the model “Binary RBM”: it is damaged (models/rbm-1.safetensors: "
                                            "Bad CRC-32"], ["rbm-2"], ALL_LAYERS),
    "model of another kind": (_edit(lambda m: m["models"][0].update(kind="vae")),
                              ["Skipped the model “Binary RBM”: it is listed as 'vae' but holds a 'rbm' model."],
                              ["rbm-2"], ALL_LAYERS),
    "model not in the manifest's files": (_edit(lambda m: m["files"].pop("models/rbm-2.safetensors")),
                                          ["it is not listed in the project's manifest"], ["rbm-1"], ALL_LAYERS),
    "model entry malformed": (_edit(lambda m: m["models"].insert(0, "junk")),
                              ["Skipped model 1: it is malformed in project.json."], ["rbm-1", "rbm-2"], ALL_LAYERS),
    "model compressed with bzip2": (_bz2_model, ["it is compressed in a way Harmonium does not write"], ["rbm-2"],
                                    ALL_LAYERS),
    "tampered layer PNG": (_tampered_png, ["Skipped the layer “texture”: it is damaged or was modified: its checksum "
                                           "does not match", "Skipped the layer “texture copy”: it is damaged or was "
                                           "modified"], ["rbm-1", "rbm-2"], NOT_TEXTURE),
    "missing layer PNG": (lambda s, o: rewrite(s, o, drop={_first_layer_png(s)}),
                          ["Skipped the layer “texture”: it is missing from the project", "“texture copy”: it is missing"],
                          ["rbm-1", "rbm-2"], NOT_TEXTURE),
    "invalid layer settings": (_edit(lambda m: m["canvas"]["layers"][3].update(opacity=5)),
                               ["Skipped the layer “float frame”: it has invalid settings (opacity must be in [0, 1], "
                                "got 5.0)."], ["rbm-1", "rbm-2"], ALL_LAYERS[:3] + ALL_LAYERS[4:]),
    "layer opacity a string": (_edit(lambda m: m["canvas"]["layers"][2].update(opacity="0.5")),
                               ["Skipped the layer “rgba”: it has an invalid opacity in project.json."],
                               ["rbm-1", "rbm-2"], ALL_LAYERS[:2] + ALL_LAYERS[3:]),
    "two layers with one id": (_edit(lambda m: m["canvas"]["layers"][4].update(id=m["canvas"]["layers"][0]["id"])),
                               ["Skipped the layer “animated”: it has the id of another layer"],
                               ["rbm-1", "rbm-2"], ALL_LAYERS[:4] + ALL_LAYERS[5:]),
    "layer entry malformed": (_edit(lambda m: m["canvas"]["layers"].append([1, 2])),
                              ["Skipped the layer 7: it is malformed in project.json."], ["rbm-1", "rbm-2"], ALL_LAYERS),
    ".npy header declaring 120 GB": (_huge_npy_header, ["Skipped the layer “float frame”: it cannot be decoded "
                                                        "(layers/"],
                                     ["rbm-1", "rbm-2"], ALL_LAYERS[:3] + ALL_LAYERS[4:]),
    ".npy header numpy cannot parse": (_unparsable_npy_header, [("Skipped the layer “float frame”: it cannot be decoded "
                                                                 "(layers/", "its .npy header is invalid (TokenError)).")],
                                       ["rbm-1", "rbm-2"], ALL_LAYERS[:3] + ALL_LAYERS[4:]),
    "an empty layer id": (_edit(lambda m: m["canvas"]["layers"][2].update(id="")),
                            ["Skipped the layer “rgba”: it has no valid id."], ["rbm-1", "rbm-2"],
                            ALL_LAYERS[:2] + ALL_LAYERS[3:]),
    "bad preprocess": (_edit(lambda m: m["dataset"]["preprocess"].update(size=3)),
                       ["Skipped the project's dataset reference: its preprocessing is invalid"], ["rbm-1", "rbm-2"],
                       ALL_LAYERS),
    "a NUL in a dataset source": (_edit(lambda m: m["dataset"]["sources"].append("/tmp/a\x00b")),
                                  ["Skipped the project's dataset reference: its list of image sources is malformed."],
                                  ["rbm-1", "rbm-2"], ALL_LAYERS),
}


@pytest.mark.parametrize("case", list(SKIPPED))
def test_a_bad_part_is_skipped_and_reported_and_the_rest_opens(case, project, saved, canvas, tmp_path):
    make, expected, models, layers = SKIPPED[case]
    bad = make(saved, tmp_path / "bad.harmonium")
    opened = open_project(bad)
    assert len(opened.problems) == len(expected), opened.problems
    for problem, words in zip(opened.problems, expected):
        assert all(w in problem for w in ([words] if isinstance(words, str) else words)), problem
        assert problem.startswith("Skipped ") and problem.endswith(".") and "\n" not in problem
    # the good models open with their tensors as saved, and can be made jobs of
    assert [m.name for m in opened.models] == models
    saved_models = {m.name: m for m in project.models}
    for m in opened.models:
        a, b = saved_models[m.name].model.state_dict(), m.model.state_dict()
        assert all(torch.equal(a[k].cpu(), b[k]) for k in a)
        assert m.path.is_file()
    assert sorted(p.name for p in opened.extract_dir.iterdir()) == sorted(f"{n}.safetensors" for n in models)
    # the kept layers are exactly the saved ones, in order
    assert [layer.name for layer in opened.canvas.layers] == layers
    assert layers_equal([layer for layer in canvas.layers if layer.name in layers], opened.canvas.layers)
    assert opened.canvas.render_uint8().shape == (canvas.height, canvas.width, 4)
    assert (opened.dataset is None) == any("dataset reference" in str(words) for words in expected)


def test_any_layer_id_saves_and_reopens(tmp_path):
    """Pixel members were named after layer ids: an id with a NUL (which cuts a zip name short), a
    slash or dots made a project that saved but did not reopen (found by the fuzz test)."""
    canvas = Canvas(8, 8)
    for i, odd in enumerate(["a\x00b", "../../up", "/abs", "x" * 200, "é ü", "a\x00c"]):
        canvas.add_layer(Layer(id=odd, name=str(i), source=np.full((2, 2, 1), i * 40, np.uint8)))
    opened = open_project(save_project(tmp_path / "odd", ProjectData(canvas=canvas)))
    assert opened.problems == [] and layers_equal(canvas.layers, opened.canvas.layers)
    with zipfile.ZipFile(tmp_path / "odd.harmonium") as zf:
        names = [n for n in zf.namelist() if n.startswith("layers/")]
    assert len(set(names)) == 6 and all(re.fullmatch(r"layers/[A-Za-z0-9._-]{1,60}\.png", n) for n in names), names


def test_too_many_layers_or_models_is_refused_at_once(saved, tmp_path, monkeypatch):
    monkeypatch.setattr(project_reading, "MAX_LAYERS", 5)
    with pytest.raises(ProjectError, match=r"Cannot open art.harmonium: it has 6 layers; Harmonium opens at most 5\.$"):
        open_project(saved)
    monkeypatch.setattr(project_reading, "MAX_LAYERS", 6)
    monkeypatch.setattr(project_reading, "MAX_MODELS", 1)
    with pytest.raises(ProjectError, match=r"it lists 2 models; Harmonium opens at most 1\.$"):
        open_project(saved)
    monkeypatch.setattr(project_reading, "MAX_MODELS", 2)
    assert len(open_project(saved).canvas.layers) == 6


def test_memory_error_never_escapes(saved, monkeypatch):
    def starved(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(project_reading, "_decode_pixels", starved)
    with pytest.raises(ProjectError, match="it needs more memory than is free"):
        open_project(saved)


# ----------------------------------------------------------------------------- bounded: memory, time, blocking


def raw_zip(members: list[dict]) -> bytes:
    """A zip archive written by hand, so that its headers can lie.  Each member: ``name``,
    ``data`` (the bytes as stored, already compressed), ``crc``, ``size`` (the declared
    uncompressed size) and optionally ``method`` (0 stored, 8 deflated), ``flags``, ``external``."""
    out, central = bytearray(), bytearray()
    for m in members:
        name = m["name"].encode()
        method, flags, data = m.get("method", 0), m.get("flags", 0), m["data"]
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, flags, method, 0, 0x21, m["crc"], len(data),
                               m["size"], len(name), 0, 0, 0, 0, m.get("external", 0), len(out)) + name
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, flags, method, 0, 0x21, m["crc"], len(data), m["size"],
                           len(name), 0) + name + data
    n = len(members)
    return bytes(out + central + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(central), len(out), 0))


def stored(name: str, data: bytes) -> dict:
    return {"name": name, "data": data, "crc": zlib.crc32(data), "size": len(data)}


def members_of(path: Path) -> list[dict]:
    with zipfile.ZipFile(path) as zf:
        return [stored(i.filename, zf.read(i)) for i in zf.infolist()]


def zeros_deflated(n_mib: int) -> bytes:
    """A raw deflate stream of ``n_mib`` MiB of zeros, made without compressing them all: after a
    full flush the compressor starts afresh, so every MiB compresses to the same ~1 KB."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    return block * n_mib + c.flush()


def _peak_while(fn) -> tuple[object, int]:
    """``(what fn returned or raised, peak bytes Python allocated meanwhile)``."""
    tracemalloc.start()
    try:
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - the caller asserts what it is
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_manifest_declaring_200_bytes_that_inflates_to_1_GB_is_refused_without_inflating(saved, tmp_path):
    bomb = zeros_deflated(1024)  # 1 GiB of zeros in about 1 MB
    manifest = {"name": "project.json", "data": bomb, "method": 8, "crc": zlib.crc32(bytes(200)), "size": 200}
    bad = tmp_path / "bad.harmonium"
    bad.write_bytes(raw_zip([m for m in members_of(saved) if m["name"] != "project.json"] + [manifest]))
    assert bad.stat().st_size < 2 << 20
    result, peak = _peak_while(lambda: open_project(bad))
    assert isinstance(result, ProjectError) and "its project.json is not valid JSON" in str(result), result
    assert peak < 16 << 20  # it read the 200 bytes declared, never the GB


def test_a_model_inflating_1000_times_is_skipped_without_inflating_and_the_rest_opens(saved, tmp_path):
    members = members_of(saved)
    for m in members:
        if m["name"] == "models/rbm-1.safetensors":  # 1 GiB of zeros, honestly declared: a ratio bomb
            m.update(data=zeros_deflated(1024), method=8, crc=0, size=1 << 30)
        if m["name"] == "models/rbm-2.safetensors":  # declares 200 bytes, inflates to 200 MiB
            m.update(data=zeros_deflated(200), method=8, crc=zlib.crc32(bytes(200)), size=200)
    bad = tmp_path / "bad.harmonium"
    bad.write_bytes(raw_zip(members))
    opened, peak = _peak_while(lambda: open_project(bad))
    assert not isinstance(opened, Exception), opened
    assert opened.problems == [
        "Skipped the model “Binary RBM”: it is a compression bomb (models/rbm-1.safetensors would inflate 1,011×).",
        "Skipped the model “Binary RBM (training)”: it is damaged or was modified: its checksum does not match "
        "(models/rbm-2.safetensors)."]
    assert opened.models == [] and len(opened.canvas.layers) == 6
    assert peak < 16 << 20
    assert list(opened.extract_dir.iterdir()) == []


def test_the_total_unpacked_size_is_capped_before_reading(saved, monkeypatch):
    total = sum(i.file_size for i in zipfile.ZipFile(saved).infolist())
    monkeypatch.setattr(project_reading, "MAX_UNPACKED_BYTES", total - 1)
    with pytest.raises(ProjectError, match=r"its contents would unpack to more than 2\d\.\d KiB; the file is damaged or hostile"):
        open_project(saved)
    monkeypatch.setattr(project_reading, "MAX_UNPACKED_BYTES", total)
    assert open_project(saved).problems == []
    # what is read is counted too: a manifest listing one model member many times reads it each time
    many = rewrite(saved, saved.with_name("many.harmonium"), manifest=lambda m: m["models"].extend(m["models"] * 20))
    monkeypatch.setattr(project_reading, "MAX_UNPACKED_BYTES", sum(i.file_size for i in zipfile.ZipFile(many).infolist()) * 2)
    with pytest.raises(ProjectError, match=r"its contents unpack to more than \d+\.?\d* KiB; the file is damaged or hostile"):
        open_project(many)


def test_layer_pixels_are_budgeted_before_they_are_decoded(saved, monkeypatch):
    monkeypatch.setattr(project_reading, "MAX_PIXEL_BYTES", 6 * 6 * 1 + 9 * 7 * 4)  # texture and rgba, nothing more
    opened = open_project(saved)
    assert [layer.name for layer in opened.canvas.layers] == ["texture", "texture copy", "rgba"]
    assert len(opened.problems) == 3
    assert all(p.endswith("it would take the project's layers past 288 bytes of pixels.") for p in opened.problems)


def _opens_within(path: Path, seconds: float = 10.0) -> object:
    """What opening ``path`` returned or raised, failing the test if it blocks."""
    result: dict[str, object] = {}

    def run():
        try:
            result["r"] = open_project(path)
        except Exception as exc:  # noqa: BLE001
            result["r"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():  # release a thread blocked on a FIFO before failing
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        pytest.fail(f"opening {path.name} blocked")
    return result["r"]


def test_only_regular_files_are_opened(tmp_path):
    fifo = tmp_path / "pipe.harmonium"
    os.mkfifo(fifo)
    result = _opens_within(fifo)
    assert isinstance(result, ProjectError)
    assert str(result) == ("Cannot open pipe.harmonium: it is not a regular file (a pipe, a device or a socket); "
                           "a project is a .harmonium file.")
    device = tmp_path / "zero.harmonium"
    device.symlink_to("/dev/zero")
    assert "it is not a regular file" in str(_opens_within(device))
    folder = tmp_path / "folder.harmonium"
    folder.mkdir()
    assert str(_opens_within(folder)) == "Cannot open folder.harmonium: it is a folder, not a project file."
    with pytest.raises(ProjectError, match="it is not a regular file"):
        read_manifest(fifo)


def test_a_fifo_swapped_in_after_the_check_cannot_block(saved, tmp_path, monkeypatch):
    fifo = tmp_path / "swapped.harmonium"
    os.mkfifo(fifo)
    real_stat = os.stat
    monkeypatch.setattr(project_reading.os, "stat", lambda p, *a, **k: real_stat(saved) if Path(p) == fifo else real_stat(p, *a, **k))
    result = _opens_within(fifo)
    assert "it is not a regular file" in str(result)


def test_opening_never_reads_the_dataset_images(tmp_path, canvas, monkeypatch):
    import builtins

    import PIL.Image

    images = tmp_path / "images"
    images.mkdir()
    Image.new("L", (8, 8), 128).save(images / "a.png")
    ref = DatasetRef(sources=[str(images)], paths=[str(images / "a.png")], count=1)
    path = save_project(tmp_path / "p.harmonium", ProjectData(canvas=canvas, dataset=ref))
    touched: list[str] = []

    def spy(real):
        def wrapper(target=".", *args, **kwargs):
            touched.append(os.fspath(target) if isinstance(target, (str, os.PathLike)) else repr(target))
            return real(target, *args, **kwargs)
        return wrapper

    for owner, name in ((builtins, "open"), (io, "open"), (os, "open"), (os, "scandir"), (os, "listdir"),
                        (PIL.Image, "open")):
        monkeypatch.setattr(owner, name, spy(getattr(owner, name)))
    opened = open_project(path)
    monkeypatch.undo()
    assert opened.dataset.sources == [str(images)] and opened.dataset.count == 1
    assert str(path) in touched  # the spies work
    assert not [t for t in touched if t.startswith(str(images))], touched


def test_outside_sources_lists_what_resolves_outside_the_project_folder(tmp_path, canvas):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    (work / "images").mkdir(parents=True)
    elsewhere.mkdir()
    (work / "link").symlink_to(elsewhere)  # inside by name, outside once resolved
    (work / "inner-link").symlink_to(work / "images")  # a link that stays inside
    sources = [work / "images", elsewhere, work / "link", work / "inner-link", Path("/"), tmp_path / "missing",
               work / "images" / ".." / ".." / "elsewhere"]
    ref = DatasetRef(sources=[str(s) for s in sources])
    path = save_project(work / "p.harmonium", ProjectData(canvas=canvas, dataset=ref))
    opened = open_project(path)
    found, missing = opened.dataset.resolve(work)
    assert missing == [str(tmp_path / "missing")]
    outside = [str(elsewhere), str(work / "link"), "/", str(work / "images" / ".." / ".." / "elsewhere")]
    assert opened.outside_sources() == outside == opened.outside_sources(path)
    assert [s for s in found if s not in outside] == [str(work / "images"), str(work / "inner-link")]
    # the same project seen from the other folder: what was inside is now outside, and the other way round
    assert opened.outside_sources(elsewhere / "p.harmonium") == [str(work / "images"), str(work / "inner-link"), "/"]
    # no dataset, nothing to confirm; a project without a path must be given one
    assert ProjectData(canvas=canvas).outside_sources(path) == []
    with pytest.raises(ValueError, match="give the project file's path"):
        ProjectData(canvas=canvas, dataset=ref).outside_sources()


def test_a_moved_project_finds_its_images_inside_and_asks_nothing(tmp_path, canvas):
    images = tmp_path / "work" / "images"
    images.mkdir(parents=True)
    path = save_project(tmp_path / "work" / "p.harmonium", ProjectData(canvas=canvas, dataset=DatasetRef(sources=[str(images)])))
    (tmp_path / "work").rename(tmp_path / "moved")
    opened = open_project(tmp_path / "moved" / "p.harmonium")
    assert opened.dataset.resolve(tmp_path / "moved")[0] == [str((tmp_path / "moved" / "images").resolve())]
    assert opened.outside_sources() == []


def _many_layers(path: Path, n: int) -> Path:
    rng = np.random.default_rng(n)
    layers = tuple(Layer(name=f"l{i}", source=(rng.random((4, 4)) * 255).astype(np.uint8), x=i % 30, y=i % 20)
                   for i in range(n))
    return save_project(path, ProjectData(canvas=CanvasState(64, 64, None, layers)), thumbnail=False)


def test_opening_time_grows_linearly_with_the_layers(tmp_path):
    """10,000 layers took 117 s: each was added to the canvas alone, copying and diffing the
    whole stack.  10× the layers must cost about 10× the time (quadratic would be 100×)."""
    small, big = _many_layers(tmp_path / "small", 200), _many_layers(tmp_path / "big", 2000)

    def cost(path: Path, runs: int) -> float:
        best = float("inf")
        for _ in range(runs):
            start = time.thread_time()  # this thread's CPU time: other processes do not count
            opened = open_project(path)
            best = min(best, time.thread_time() - start)
        assert opened.problems == [] and len(opened.canvas.layers) in (200, 2000)
        assert not opened.canvas.can_undo
        return best

    ratio = cost(big, 2) / cost(small, 5)
    assert ratio < 20, f"2,000 layers cost {ratio:.1f}× 200 layers"


# ----------------------------------------------------------------------------- atomic saves


def test_failed_save_leaves_the_original_untouched(project, saved, monkeypatch):
    original = saved.read_bytes()
    calls = {"n": 0}
    real = project_saving._encode_pixels

    def flaky(a):
        calls["n"] += 1
        if calls["n"] == 3:  # mid-write: models and some layers are already in the archive
            raise OSError(28, "No space left on device")
        return real(a)

    monkeypatch.setattr(project_saving, "_encode_pixels", flaky)
    project.canvas.set_layer(project.canvas.layers[0].id, opacity=0.25)  # a change that would be saved
    with pytest.raises(OSError):
        save_project(saved, project)
    assert saved.read_bytes() == original
    assert sorted(p.name for p in saved.parent.iterdir()) == ["art.harmonium", "images"]  # no temp file left
    monkeypatch.setattr(project_saving, "_encode_pixels", real)
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
