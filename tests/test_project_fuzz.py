"""Fuzzing project files: every mutation of a valid project either opens and is usable or is
refused with a ProjectError, never anything else.

A small valid project (a canvas with PNG, .npy, animated and shared-pixel layers; a binary RBM
with its training state and a VAE, both made by ``models.factory``) is mutated, seeded, in
several families: truncation, byte flips, zip tricks (duplicate names, ``../`` and absolute
names, symlink entries, lying sizes, wrong CRCs, nested zips, the encrypted flag, other
compression methods), manifest JSON type and range confusion, deep nesting, and member
contents swapped with their checksums made to match (so that the deeper checks must catch
them).  "Usable" means: the layers are read-only pixel arrays of the declared shape, the
canvas renders, every model draws samples, every problem is one sentence, and the opened
project saves and reopens with the same layers.  Run with ``-s`` to see the outcome counts.
"""

from __future__ import annotations

import copy
import faulthandler
import hashlib
import io
import json
import os
import random
import stat
import traceback
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import studio.project as project_mod
import studio.project.reading as project_reading
from models.factory import Options, build, sample_images
from studio.canvas import Canvas, Layer
from studio.project import DatasetRef, ProjectData, ProjectError, ProjectModel, open_project, save_project
from test_project import raw_zip, stored

# More cases or another seed for a longer hunt: HARMONIUM_FUZZ_CASES=20000 HARMONIUM_FUZZ_SEED=7 pytest -s ...
SEED = int(os.environ.get("HARMONIUM_FUZZ_SEED", 20240513))
CASES = int(os.environ.get("HARMONIUM_FUZZ_CASES", 400))

# ----------------------------------------------------------------------------- the valid project


def _model(kind: str, shape: tuple[int, int, int], steps: int = 0):
    data = (torch.rand(20, *shape, generator=torch.Generator().manual_seed(1)) > 0.5).to(torch.uint8) * 255
    extra = {} if kind == "rbm" else {"width": 4}
    trainer = build(Options(kind=kind, image_shape=shape, hidden=4, latent=2, epochs=2, batch_size=5, seed=2,
                            n_chains=4, frame_every=0, extra=extra), data, "cpu")
    if steps:
        run = trainer.run()
        for _ in range(steps):
            next(run)
        run.close()
    return trainer


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    canvas = Canvas(24, 20, background=(0.2, 0.3, 0.4, 1.0))
    first = canvas.add_layer(Layer(name="png", source=(rng.random((5, 6, 3)) * 255).astype(np.uint8), x=2, y=-1,
                                   provenance={"model": "rbm", "seed": 3}))
    canvas.add_layer(Layer(name="float", source=rng.random((4, 4, 1)).astype(np.float32), scale=2.0, opacity=0.5,
                           blend_mode="multiply", tiling="mirror"))
    canvas.add_layer(Layer(name="frames", frames=tuple((rng.random((3, 4, 4)) * 255).astype(np.uint8) for _ in range(3)),
                           frame_index=2, levels=(0.1, 0.9, 1.2, 0.0, 1.0)))
    canvas.add_layer(Layer(name="uint16", source=(rng.random((3, 3, 2)) * 65535).astype(np.uint16), invert=True,
                           colourise={"palette": [[0, 0, 0], [1, 0.5, 0.2]]}))
    canvas.duplicate_layer(first.id, name="shared")
    rbm, vae = _model("rbm", (1, 8, 8), steps=2), _model("vae", (1, 28, 28))
    models = [ProjectModel("rbm-1", "rbm", "Binary RBM", model=rbm.model, trainer=rbm),
              ProjectModel("vae-2", "vae", "VAE", model=vae.model, meta={"note": "x"})]
    folder = tmp_path_factory.mktemp("fuzz-base")
    (folder / "images").mkdir()
    dataset = DatasetRef(sources=[str(folder / "images")], preprocess={"size": 16})
    path = save_project(folder / "base.harmonium", ProjectData(canvas=canvas, dataset=dataset, models=models))
    assert open_project(path).problems == []
    return path


# ----------------------------------------------------------------------------- mutations


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Parts:
    """The base project taken apart: members (stored, in order) and the manifest."""

    def __init__(self, path: Path) -> None:
        with zipfile.ZipFile(path) as zf:
            self.members = [stored(i.filename, zf.read(i)) for i in zf.infolist() if i.filename != "project.json"]
            self.manifest = json.loads(zf.read("project.json"))

    def assemble(self, manifest_bytes: bytes | None = None, deflate_manifest: bool = True) -> bytes:
        text = manifest_bytes if manifest_bytes is not None else json.dumps(self.manifest).encode()
        if deflate_manifest:
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            last = {"name": "project.json", "data": c.compress(text) + c.flush(), "method": 8,
                    "crc": zlib.crc32(text), "size": len(text)}
        else:
            last = stored("project.json", text)
        return raw_zip(self.members + [last])

    def member(self, name: str) -> dict:
        return next(m for m in self.members if m["name"] == name)

    def replace(self, name: str, data: bytes, fix_sha: bool = True) -> None:
        self.member(name).update(stored(name, data))
        if fix_sha:
            self.manifest["files"][name] = _sha(data)

    def names(self, prefix: str) -> list[str]:
        return [m["name"] for m in self.members if m["name"].startswith(prefix)]


def _truncate(rng: random.Random, raw: bytes, parts: Parts) -> bytes:
    return raw[: rng.randrange(len(raw))]


def _flip(rng: random.Random, raw: bytes, parts: Parts) -> bytes:
    data = bytearray(raw)
    if rng.random() < 0.5:  # anywhere
        spots = [rng.randrange(len(data)) for _ in range(rng.randint(1, 8))]
    else:  # in the last 2 KB: the manifest and the zip directory
        spots = [len(data) - 1 - rng.randrange(min(2048, len(data))) for _ in range(rng.randint(1, 4))]
    for i in spots:
        data[i] ^= rng.randint(1, 255)
    return bytes(data)


def _zip_trick(rng: random.Random, raw: bytes, parts: Parts) -> bytes:
    names = [m["name"] for m in parts.members]
    trick = rng.choice(["duplicate", "dotdot", "absolute", "symlink", "huge size", "small size", "crc", "nested",
                        "encrypted", "method", "prefix", "empty name", "many members"])
    target = rng.choice([n for n in names if n != "mimetype"])
    m = parts.member(target)
    if trick == "duplicate":
        parts.members.append(stored(target, rng.randbytes(rng.randint(0, 64))))
    elif trick in ("dotdot", "absolute", "empty name"):  # rename a member, and the manifest with it
        new = {"dotdot": "../../" + target, "absolute": "/tmp/" + target, "empty name": ""}[trick]
        text = json.dumps(parts.manifest).replace(json.dumps(target), json.dumps(new))
        parts.manifest = json.loads(text)
        m["name"] = new
    elif trick == "symlink":  # the member says it is a symlink to a system file
        parts.replace(target, b"/etc/passwd")
        m["external"] = (stat.S_IFLNK | 0o777) << 16
    elif trick == "huge size":
        m["size"] = rng.choice([2**32 - 1, 2**31, 10**9])
    elif trick == "small size":  # declares less than it holds
        m["size"] = rng.randrange(max(1, m["size"]))
    elif trick == "crc":
        m["crc"] ^= 1 << rng.randrange(32)
    elif trick == "nested":  # a member replaced by a zip of the whole project, its checksum made to match
        parts.replace(target, raw)
    elif trick == "encrypted":
        m["flags"] = 1
    elif trick == "method":
        m["method"] = rng.choice([1, 6, 9, 12, 14, 93, 98, 99, 0xFFFF])
    elif trick == "many members":
        parts.members += [stored(f"junk/{i}", b"") for i in range(rng.randint(100, 3000))]
    out = parts.assemble()
    if trick == "prefix":
        out = rng.randbytes(rng.randint(1, 4096)) + out
    return out


_CONFUSION = [None, True, False, 0, 1, -1, 2, 255, 4097, 2**31, 2**63, -(2**63), 10**30, 1e308, -1e308,
              float("inf"), float("nan"), 0.5, -0.0, "", "x", "0", "#ff0000", "normal", "../../etc/passwd",
              "\x00", "é" * 500, [], [0], [1, 2, 3], [[0, 1, 2]], [None], {}, {"a": 1}, {"gradient": []},
              {"palette": [[2, 2, 2]]}, {"file": "project.json"}, {"frame": 0}]


def _json_paths(value: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _json_paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _json_paths(v, prefix + (i,))
    return out


def _manifest(rng: random.Random, raw: bytes, parts: Parts) -> bytes:
    m = parts.manifest
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _json_paths(m) if p and p[0] != "files"] + [("files",)]
        where = rng.choice(paths)
        parent = m
        for key in where[:-1]:
            parent = parent[key]
        key = where[-1]
        action = rng.random()
        if action < 0.6:
            parent[key] = copy.deepcopy(rng.choice(_CONFUSION))
        elif action < 0.7:  # nesting, written into the text below (json.dumps itself would recurse too deep)
            parent[key] = f"__NEST_{rng.choice([10, 60, 70, 500, 5000, 100_000])}__"
        elif action < 0.8 and isinstance(parent, dict):
            del parent[key]
        elif action < 0.9 and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))  # a duplicate: a layer with the same id, a model twice
        elif isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
            parent[key] = parent[key] * rng.choice([-1, 0, 3, 1000, 1e9])
        else:
            parent[key] = copy.deepcopy(rng.choice(_CONFUSION))
    text = json.dumps(m, allow_nan=True)
    for depth in (10, 60, 70, 500, 5000, 100_000):
        text = text.replace(f'"__NEST_{depth}__"', "[" * depth + "]" * depth)
    if rng.random() < 0.1:
        text = text[: rng.randrange(200)]
    return parts.assemble(text.encode())


def _png(rng: random.Random, size: tuple[int, int], mode: str) -> bytes:
    buf = io.BytesIO()
    Image.frombytes(mode, size, rng.randbytes(size[0] * size[1] * len(mode))).save(buf, format="PNG")
    return buf.getvalue()


def _content(rng: random.Random, raw: bytes, parts: Parts) -> bytes:
    """A member's bytes swapped, its checksum made to match: only the deeper checks can tell."""
    target = rng.choice(parts.names("layers/") + parts.names("models/"))
    old = parts.member(target)["data"]
    choice = rng.choice(["random", "truncated", "png", "npy", "safetensors header", "empty", "pixels flipped"])
    if choice == "random":
        new = rng.randbytes(rng.randint(1, 2048))
    elif choice == "truncated":
        new = old[: rng.randrange(max(1, len(old)))]
    elif choice == "png":
        new = _png(rng, (rng.randint(1, 9), rng.randint(1, 9)), rng.choice(["L", "LA", "RGB", "RGBA", "P"]))
    elif choice == "npy":
        buf = io.BytesIO()
        shape = tuple(rng.randint(1, 6) for _ in range(rng.choice([2, 3, 4])))
        dtype = rng.choice(["<f4", ">f4", "<f8", "|u1", "<u2", "|b1", "<i8", "<c8"])
        np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": rng.random() < 0.3, "shape": shape})
        new = buf.getvalue() + rng.randbytes(int(np.prod(shape)) * np.dtype(dtype).itemsize + rng.choice([0, 0, -1, 3]))
    elif choice == "safetensors header":  # the checkpoint's metadata JSON mangled
        n = int.from_bytes(old[:8], "little") if len(old) >= 8 else 0
        header = bytearray(old[8 : 8 + n])
        for _ in range(rng.randint(1, 6)):
            if header:
                header[rng.randrange(len(header))] = rng.choice(b'{}[]",:0123456789-eE.ntfalsu ')
        new = old[:8] + bytes(header) + old[8 + n :]
    elif choice == "empty":
        new = b""
    else:
        data = bytearray(old)
        for _ in range(rng.randint(1, 5)):
            if data:
                data[rng.randrange(len(data))] ^= rng.randint(1, 255)
        new = bytes(data)
    parts.replace(target, new)
    return parts.assemble()


FAMILIES = {"truncation": _truncate, "byte flips": _flip, "zip tricks": _zip_trick, "manifest JSON": _manifest,
            "member contents": _content}


# ----------------------------------------------------------------------------- the property


def _check_usable(opened: ProjectData, tmp: Path, known_models: set[str]) -> None:
    """An opened project is usable: layers are pixel arrays as declared, the canvas renders, every
    model samples (those not byte-identical to the base's: they are known to), problems are
    sentences, and it saves (its models copied, as the studio does for opened models) and reopens
    with the same layers."""
    for problem in opened.problems:
        assert isinstance(problem, str) and problem.startswith("Skipped ") and problem.endswith(".")
        assert "\n" not in problem and len(problem) < 1000
    canvas = opened.canvas
    for layer in canvas.layers:
        for a in (layer.source, *layer.frames):
            assert isinstance(a, np.ndarray) and a.ndim == 3 and a.shape[2] in (1, 2, 3, 4) and not a.flags.writeable
            assert str(a.dtype) in ("uint8", "uint16", "bool", "float16", "float32", "float64")
    if canvas.width * canvas.height <= 512 * 512:
        assert canvas.render_uint8().shape == (canvas.height, canvas.width, 4)
    for m in opened.models:
        assert m.path.is_file() and m.checkpoint.kind == m.kind
        if m.sha256 not in known_models:  # absurd finite weights (1e38) may well dream NaN: not asked here
            images = sample_images(m.model, 2, steps=2)
            assert images.ndim == 4 and images.shape[0] == 2
        m.checkpoint_file = m.path
    again = open_project(save_project(tmp / "again.harmonium", opened, thumbnail=False))
    assert again.problems == []
    assert project_mod.layers_equal(canvas.layers, again.canvas.layers)
    assert [m.kind for m in again.models] == [m.kind for m in opened.models]


def test_fuzzed_projects_open_usably_or_are_refused(base, tmp_path):
    rng = random.Random(SEED)
    raw = base.read_bytes()
    known_models = {m.sha256 for m in open_project(base).models}
    outcomes: Counter[tuple[str, str]] = Counter()
    failures: list[str] = []
    faulthandler.dump_traceback_later(300, exit=True)  # a hang fails loudly instead of blocking the suite
    try:
        for case in range(CASES):
            family = list(FAMILIES)[case % len(FAMILIES)]
            case_dir = tmp_path / f"case-{case}"
            case_dir.mkdir()
            bad = case_dir / "fuzz.harmonium"
            bad.write_bytes(FAMILIES[family](rng, raw, Parts(base)))
            dirs_before = len(project_reading._EXTRACT_DIRS)
            try:
                opened = open_project(bad)
            except ProjectError as exc:
                message = str(exc)
                if not (message.startswith("Cannot open fuzz.harmonium: ") and message.endswith(".")
                        and "\n" not in message and len(project_reading._EXTRACT_DIRS) == dirs_before):
                    failures.append(f"case {case} ({family}): unclear refusal {message!r}")
                outcomes[family, "refused"] += 1
                continue
            except BaseException:  # noqa: BLE001 - anything else is the failure this test looks for
                failures.append(f"case {case} ({family}): {traceback.format_exc()}")
                outcomes[family, "CRASHED"] += 1
                continue
            try:
                _check_usable(opened, case_dir, known_models)
            except BaseException:  # noqa: BLE001
                failures.append(f"case {case} ({family}): opened but not usable: {traceback.format_exc()}")
                outcomes[family, "NOT USABLE"] += 1
                continue
            outcomes[family, "opened with problems" if opened.problems else "opened intact"] += 1
    finally:
        faulthandler.cancel_dump_traceback_later()
    kinds = ["opened intact", "opened with problems", "refused", "CRASHED", "NOT USABLE"]
    print(f"\nproject fuzz: {CASES} cases, seed {SEED}")
    print(f"{'family':<18}" + "".join(f"{k:>22}" for k in kinds))
    for family in FAMILIES:
        print(f"{family:<18}" + "".join(f"{outcomes[family, k]:>22}" for k in kinds))
    print(f"{'all':<18}" + "".join(f"{sum(outcomes[f, k] for f in FAMILIES):>22}" for k in kinds))
    assert not failures, "\n\n".join(failures[:5]) + f"\n\n({len(failures)} failures)"
    # the fuzz reaches every outcome: it does not refuse everything at the door
    assert sum(outcomes[f, "opened intact"] for f in FAMILIES) > 0
    assert sum(outcomes[f, "opened with problems"] for f in FAMILIES) > 0
    assert sum(outcomes[f, "refused"] for f in FAMILIES) > 0
