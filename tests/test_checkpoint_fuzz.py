"""Fuzzing checkpoints: every mutation of a valid file either loads AND is usable, or is refused
with `CheckpointError`, never anything else (no other exception, no crash, no hang).

A small valid checkpoint of each kind (rbm, grbm, ae, vae, hybrid; built with `models.factory`,
trained a few steps, so the optimiser, chain and random states are all in the file) is mutated
by a seeded generator: truncation, byte flips, header-length tricks, JSON type confusion
(str, list, object, number, null, bool, NaN, ±Infinity, huge integers), range confusion
(negatives, zero, 1e308, 2**64), deep nesting, huge strings, declared tensor sizes and offsets
that lie, tensor shape and dtype swaps, missing and extra tensors, poisoned values.

"Usable" is checked, not assumed: the loaded model dreams a few images (the autoencoder
reconstructs) that have its shape and are finite, and a file with a training state resumes and
takes one training step; a step that diverges (a hostile learning rate of Infinity is accepted:
the trainer rolls back to the loaded weights and says so) is counted apart. Run with `-s` to see
the outcome counts (the README quotes them).
"""
from __future__ import annotations

import copy
import json
import random
import struct
import traceback
from collections import Counter

import pytest
import torch
from safetensors.torch import load, save

from models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from models.factory import Options, build, make_sampler, sample_images
from models.tempering import base_from_checkpoint
from models.training import TrainingDiverged

KINDS = ("rbm", "grbm", "ae", "vae", "hybrid")
CASES_PER_KIND = 100
SEED = 20261130


def images(n: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, size, size, generator=g) * 255).to(torch.uint8)


def tiny_checkpoint(kind: str, folder) -> tuple[bytes, torch.Tensor]:
    """The bytes of a small trained checkpoint of `kind`, and the images it trains on."""
    size = 8 if kind in ("rbm", "grbm") else 28
    data = images(16, size, seed=1)
    extra: dict = {"rbm": {"tempering": 3}, "grbm": {}, "ae": {"width": 2}, "vae": {"width": 2},
                   "hybrid": {"width": 2, "rbm_epochs": 1}}[kind] | {"threads": 1}
    opts = Options(kind=kind, image_shape=(1, size, size), hidden=6, latent=4, epochs=1, batch_size=8, seed=0,
                   frame_every=0, n_chains=4, extra=extra)
    trainer = build(opts, data, "cpu")
    trainer.fit()
    path = folder / f"{kind}.safetensors"
    save_checkpoint(path, trainer.model, trainer=trainer, preprocess={"size": size, "color": False},
                    extra={"source": "fuzz", "note": [1, {"a": 2.5}]})
    raw = path.read_bytes()
    meta = meta_of(raw)  # the same bytes every run: no clock in them
    meta["created"], meta["trainer"]["elapsed"] = "2026-01-01T00:00:00+00:00", 1.0
    return with_meta_text(raw, json.dumps(meta)), data


# ------------------------------------------------------------------------------ mutations
def split(raw: bytes) -> tuple[dict, bytes]:
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def join(header: dict, body: bytes, text: str | None = None) -> bytes:
    h = (text if text is not None else json.dumps(header)).encode()
    return struct.pack("<Q", len(h)) + h + body


def with_meta_text(raw: bytes, text: str) -> bytes:
    header, body = split(raw)
    header["__metadata__"]["harmonium"] = text
    return join(header, body)


def meta_of(raw: bytes) -> dict:
    return json.loads(split(raw)[0]["__metadata__"]["harmonium"])


def nodes(value, path=()):
    """Every (path, value) in a JSON document."""
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from nodes(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from nodes(v, path + (i,))


def replaced(doc, path, value):
    doc = copy.deepcopy(doc)
    if not path:
        return value
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    return doc


#: Values of every JSON type, and the edges of the numbers ("RAW:" marks text put in as it is).
CONFUSION = ["rbm", "", "x" * 300, [], ["rbm"], [1, 2, 3], {}, {"a": 1}, 0, 1, -1, 7, 1.5, None, True, False,
             float("nan"), float("inf"), float("-inf"), 10**30, 2**63, 2**64, -(2**63) - 1,
             "RAW:" + "9" * 5000, "RAW:1e999", "RAW:-1e999"]
RANGES = [0, -1, -7, -1000, 1, 2, 10**6, 10**9, 100000, 1e308, -1e308, 1e-308, 0.5, -0.5, 2**31, 2**53 + 1, 2**64]


def dumps_with_raw(doc) -> str:
    """JSON text of `doc`, the "RAW:..." strings put in unquoted (numbers json.dumps cannot
    write, such as a 5,000-digit integer, or 1e999)."""
    text = json.dumps(doc, allow_nan=True)
    for _, v in nodes(doc):
        if isinstance(v, str) and v.startswith("RAW:"):
            text = text.replace(json.dumps(v), v[4:], 1)
    return text


def m_truncate(rng, raw, ctx):
    return raw[: rng.randrange(len(raw))]


def m_flip(rng, raw, ctx):
    b = bytearray(raw)
    for _ in range(rng.choice([1, 2, 8, 32])):
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    return bytes(b)


def m_flip_header(rng, raw, ctx):
    n = struct.unpack("<Q", raw[:8])[0]
    b = bytearray(raw)
    for _ in range(rng.choice([1, 3])):
        b[8 + rng.randrange(n)] = rng.randrange(256)
    return bytes(b)


def m_header_length(rng, raw, ctx):
    n = struct.unpack("<Q", raw[:8])[0]
    value = rng.choice([0, 1, 2, n - 1, n + 1, n + 8, len(raw), len(raw) - 8, 2**31, 2**63, 2**64 - 1])
    return struct.pack("<Q", value) + raw[8:]


def m_garbage(rng, raw, ctx):
    junk = bytes(rng.randrange(256) for _ in range(rng.choice([1, 64, 4096])))
    return rng.choice([raw + junk, junk + raw, raw[:8] + junk + raw[8:]])


def m_type(rng, raw, ctx):
    meta = meta_of(raw)
    path, _ = rng.choice(list(nodes(meta)))
    return with_meta_text(raw, dumps_with_raw(replaced(meta, path, rng.choice(CONFUSION))))


def m_range(rng, raw, ctx):
    meta = meta_of(raw)
    numbers = [p for p, v in nodes(meta) if type(v) in (int, float)]
    return with_meta_text(raw, dumps_with_raw(replaced(meta, rng.choice(numbers), rng.choice(RANGES))))


def m_named(rng, raw, ctx):
    """The fields the issue named, set to what broke them (and their neighbours)."""
    meta = meta_of(raw)
    tc = ("trainer", "train_config")
    path, value = rng.choice([
        (tc + ("threads",), rng.choice([100000, -1, 2**40])), (("kind",), ["rbm"]), (("preprocess",), [28, 28]),
        (tc + ("snapshot_every",), 0), (("format_version",), -7), (("trainer", "step"), -1000),
        (tc + ("k",), 0), (tc + ("rbm_k",), 0), (("preprocess", "size"), rng.choice([4, 16, 64])),
        (("preprocess", "color"), True), (("config", "var_floor"), float("nan")), (tc + ("n_frames",), 0),
        (tc + ("batch_size",), 0), (tc + ("n_chains",), 0), (("trainer", "seed"), 2**64),
        (("trainer", "extra", "phase"), 2), (("trainer", "extra", "rbm_start"), 10**9),
    ])
    try:
        return with_meta_text(raw, dumps_with_raw(replaced(meta, path, value)))
    except (KeyError, TypeError, IndexError):  # a field this kind lacks: set it anyway at the top
        return with_meta_text(raw, dumps_with_raw(replaced(meta, path[:1], value)))


def m_drop_or_add_key(rng, raw, ctx):
    meta = meta_of(raw)
    objects = [(p, v) for p, v in nodes(meta) if isinstance(v, dict)]
    path, obj = rng.choice(objects)
    obj = dict(obj)
    if obj and rng.random() < 0.6:
        obj.pop(rng.choice(list(obj)))
    else:
        obj[rng.choice(["sneaky", "n_visible", "step", "__class__", "phase"])] = rng.choice(CONFUSION[:16])
    return with_meta_text(raw, dumps_with_raw(replaced(meta, path, obj)))


def m_nesting(rng, raw, ctx):
    meta = meta_of(raw)
    path, _ = rng.choice(list(nodes(meta)))
    depth = rng.choice([33, 1000, 100_000])
    deep = rng.choice(["[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth])
    return with_meta_text(raw, dumps_with_raw(replaced(meta, path, "RAW:" + deep)))


def m_whole_meta(rng, raw, ctx):
    return with_meta_text(raw, rng.choice(["", "null", "[]", "1", '"x"', "{", "{}", '{"format": 1}', "NaN",
                                           json.dumps({"format": "harmonium-checkpoint"}), "x" * (17 << 20)]))


def m_declared_sizes(rng, raw, ctx):
    header, body = split(raw)
    name = rng.choice([k for k in header if k != "__metadata__"])
    entry = header[name]
    what = rng.choice(["shape", "offsets", "dtype"])
    if what == "shape":
        entry["shape"] = rng.choice([[2**40], [2**31, 2**31], [0], [], [-1], list(reversed(entry["shape"]))])
    elif what == "offsets":
        entry["data_offsets"] = rng.choice([[0, 2**62], [2**62, 2**62 + 4], [5, 1], [0, 0], [-4, 4]])
    else:
        entry["dtype"] = rng.choice(["F64", "F16", "I64", "U8", "BOOL", "F8_E4M3", "Q4"])
    return join(header, body)


def _tensors(raw):
    header, _ = split(raw)
    return load(raw), header["__metadata__"]


def m_tensor_shape(rng, raw, ctx):
    t, meta = _tensors(raw)
    name = rng.choice(sorted(t))
    x = t[name]
    t[name] = rng.choice([x.reshape(-1), x.reshape(-1)[:-1] if x.numel() > 1 else torch.zeros(2), x.t() if x.dim() == 2 else x.unsqueeze(0),
                          torch.zeros(x.numel() + 1), torch.zeros(())]).contiguous()
    return save(t, metadata=meta)


def m_tensor_dtype(rng, raw, ctx):
    t, meta = _tensors(raw)
    name = rng.choice(sorted(t))
    t[name] = t[name].to(rng.choice([torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.uint8, torch.int32, torch.bool]))
    return save(t, metadata=meta)


def m_tensor_set(rng, raw, ctx):
    t, meta = _tensors(raw)
    names = sorted(t)
    if rng.random() < 0.5:
        t.pop(rng.choice(names))
    else:
        donor = t[rng.choice(names)]
        t[rng.choice(["sneaky", "trainer.sneaky", "trainer.extra.sneaky", "trainer.optimizer.99.momentum_buffer",
                      "trainer.optimizer.0.exp_avg", "trainer.optimizer.0.momentum_buffer", "trainer.optimizer.x.step",
                      "trainer.extra.sampler.base", "trainer.extra.rbm.sampler.base", "trainer.extra.ae.rng",
                      "trainer.extra.sampler.clamp_values"])] = donor.clone()
    return save(t, metadata=meta)


def m_tensor_swap(rng, raw, ctx):
    """One tensor replaced by another of the file (same name, another tensor's shape and values)."""
    t, meta = _tensors(raw)
    a, b = rng.sample(sorted(t), 2)
    t[a] = t[b].clone()
    return save(t, metadata=meta)


def m_poison(rng, raw, ctx):
    t, meta = _tensors(raw)
    floats = sorted(k for k, v in t.items() if v.is_floating_point() and v.numel())
    name = rng.choice(floats)
    x = t[name].clone().reshape(-1)
    x[rng.randrange(x.numel())] = rng.choice([float("nan"), float("inf"), -float("inf"), 1e30, -1e30, -1.0, 0.0, 1e-30])
    t[name] = x.reshape(t[name].shape)
    return save(t, metadata=meta)


MUTATIONS = [m_truncate, m_flip, m_flip_header, m_header_length, m_garbage, m_type, m_type, m_range, m_named,
             m_drop_or_add_key, m_nesting, m_whole_meta, m_declared_sizes, m_tensor_shape, m_tensor_dtype,
             m_tensor_set, m_tensor_swap, m_poison]


# ------------------------------------------------------------------------------ outcomes
def usable(path, data) -> str:
    """Load `path` and use it; returns the outcome, raises on anything but CheckpointError
    (and a diverging first step, which the trainer handles)."""
    try:
        ck = load_checkpoint(path)
    except CheckpointError as e:
        assert str(e).startswith(f"Cannot open {path.name}: ") and "\n" not in str(e)
        return "refused at load"
    model = ck.model
    shape = (1,) + tuple(data.shape[1:])
    with torch.no_grad():
        if ck.kind == "ae":
            out = model(data[:2]).float()
            assert out.shape == (2,) + shape[1:]
        else:
            out = sample_images(model, 2, steps=2)
            assert out.shape == (2,) + shape[1:]
    assert bool(torch.isfinite(out).all()), "a loaded model dreams NaN"
    if ck.kind in ("rbm", "grbm"):  # the base rate `harmonium sample` tempers toward, read from the file
        base = base_from_checkpoint(model, path)
        if base is not None:
            assert base.numel() == model.n_visible and bool(torch.isfinite(base).all())
            tempered = make_sampler(model, n_chains=2, base=base).step(2).images("probs")
            assert bool(torch.isfinite(tempered).all())
    if not ck.meta.get("trainer"):
        return "loaded, used (no training state)"
    try:
        trainer = ck.make_trainer(data, "cpu", epochs=min(ck.meta["trainer"]["step"] + 1, 10**6))  # a step to take
    except CheckpointError as e:
        assert str(e).startswith(f"Cannot open {path.name}: ") and "\n" not in str(e)
        return "refused at resume"
    run = trainer.run()
    try:
        event = next(run)
        assert event.kind in ("step", "epoch", "done") and event.step >= 0
    except TrainingDiverged:
        assert all(bool(torch.isfinite(v).all()) for v in trainer.model.state_dict().values() if v.is_floating_point())
        return "loaded, used, resume diverged (rolled back)"
    finally:
        run.close()
    return "loaded, used, resumed a step"


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one thread is fastest, and steadiest on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def originals(tmp_path_factory, one_thread):
    folder = tmp_path_factory.mktemp("originals")
    return {kind: tiny_checkpoint(kind, folder) for kind in KINDS}


def test_mutated_checkpoints_load_and_work_or_are_refused(originals, tmp_path):
    counts: Counter[str] = Counter()
    by_mutation: Counter[tuple[str, str]] = Counter()
    failures = []
    rng = random.Random(SEED)
    for kind in KINDS:
        raw, data = originals[kind]
        assert usable(_write(tmp_path, "original", raw), data) == "loaded, used, resumed a step"
        for i in range(CASES_PER_KIND):
            mutate = MUTATIONS[i % len(MUTATIONS)] if i < len(MUTATIONS) else rng.choice(MUTATIONS)
            case = f"{kind}-{i}-{mutate.__name__}"
            bad = mutate(random.Random(f"{SEED}-{case}"), raw, None)
            path = _write(tmp_path, case, bad)
            try:
                outcome = usable(path, data)
            except Exception:  # anything but CheckpointError is a failure of the boundary
                failures.append(f"{case}: {traceback.format_exc(limit=-3)}")
                outcome = "FAILED"
            counts[outcome] += 1
            by_mutation[(mutate.__name__, outcome)] += 1
            path.unlink()
    total = sum(counts.values())
    print(f"\ncheckpoint fuzz: {total} mutated files of {len(KINDS)} kinds (seed {SEED})")
    for outcome, n in counts.most_common():
        print(f"  {n:4d}  {outcome}")
    for (name, outcome), n in sorted(by_mutation.items()):
        print(f"        {name:22s} {outcome:45s} {n}")
    assert not failures, "\n".join(failures)
    assert total == len(KINDS) * CASES_PER_KIND
    assert counts["refused at load"] > total // 3  # most mutations break something ...
    assert counts["loaded, used, resumed a step"] > 10  # ... and harmless ones still load and work


def _write(folder, name, raw: bytes):
    path = folder / f"{name}.safetensors"
    path.write_bytes(raw)
    return path


def test_the_fuzz_cases_are_the_same_every_run(originals):
    """Seeded: the same mutation of the same file gives the same bytes."""
    raw, _ = originals["rbm"]
    for mutate in MUTATIONS:
        a = mutate(random.Random(f"{SEED}-x"), raw, None)
        b = mutate(random.Random(f"{SEED}-x"), raw, None)
        assert a == b, mutate.__name__
