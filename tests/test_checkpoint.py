"""Checkpoints: exact round trip, resuming reproduces an uninterrupted run, and every kind of
malformed or tampered file is refused with a clear message (never a traceback, never a pickle)."""
from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from models.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from models.rbm import BernoulliRBM, GaussianBernoulliRBM, RBMConfig
from models.rbm_trainer import RBMTrainConfig, RBMTrainer


def data(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ((torch.rand(n, 1, 4, 4, generator=g) > 0.5) * 255).to(torch.uint8)


def trained(kind="rbm", epochs=3, **cfg):
    torch.manual_seed(0)
    cls = BernoulliRBM if kind == "rbm" else GaussianBernoulliRBM
    m = cls(RBMConfig(16, 6, (1, 4, 4)))
    tr = RBMTrainer(m, data(), RBMTrainConfig(epochs=epochs, batch_size=20, seed=3, **cfg))
    tr.fit()
    return m, tr


@pytest.mark.parametrize("kind", ["rbm", "grbm"])
def test_round_trip_is_exact(tmp_path, kind):
    m, tr = trained(kind)
    path = save_checkpoint(tmp_path / "m.safetensors", m, trainer=tr, preprocess={"size": 4, "color": False})
    ck = load_checkpoint(path)
    assert ck.kind == kind
    assert type(ck.model) is type(m)
    for k, v in m.state_dict().items():
        assert torch.equal(ck.model.state_dict()[k], v), k
    assert ck.meta["config"]["image_shape"] == [1, 4, 4]
    assert ck.preprocess == {"size": 4, "color": False}
    assert len(ck.history) == 3 and ck.history[-1]["epoch"] == 3
    assert len(ck.sha256) == 64


def test_binary_rbm_tensor_names_and_shapes(tmp_path):
    m, _ = trained()
    path = save_checkpoint(tmp_path / "m.safetensors", m)
    t = load_file(path)
    assert set(t) == {"weight", "visible_bias", "hidden_bias"}
    assert t["weight"].shape == (16, 6) and t["visible_bias"].shape == (16,) and t["hidden_bias"].shape == (6,)


@pytest.mark.parametrize("centering,persistent", [(False, True), (True, True), (False, False)])
def test_resume_from_checkpoint_equals_uninterrupted_training(tmp_path, centering, persistent):
    cfg = dict(centering=centering, persistent=persistent)
    full, _ = trained(epochs=6, **cfg)
    half, tr = trained(epochs=3, **cfg)
    path = save_checkpoint(tmp_path / "half.safetensors", half, trainer=tr)
    ck = load_checkpoint(path)
    resumed = ck.make_trainer(data(), epochs=6)
    assert resumed.step == tr.step
    resumed.fit()
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k


def test_save_is_atomic_and_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    m, _ = trained()
    path = save_checkpoint(tmp_path / "m.safetensors", m)
    before = path.read_bytes()
    import models.checkpoint as ckmod

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", boom)
    with pytest.raises(OSError):
        ckmod.save_checkpoint(path, m)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left behind


# ----------------------------------------------------------------------------- refusals
def good_file(tmp_path):
    m, tr = trained()
    return save_checkpoint(tmp_path / "good.safetensors", m, trainer=tr)


def rewrite(path, out, tensors=None, meta=None):
    t = load_file(path)
    header = read_metadata(path)
    if tensors:
        tensors(t)
    if meta:
        meta(header)
    save_file(t, str(out), metadata={"harmonium": json.dumps(header)})
    return out


def refused(path, *words):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert msg.startswith(f"Cannot open {path.name}:")
    for w in words:
        assert w in msg, msg
    return msg


def test_missing_and_empty_and_random_files_are_refused(tmp_path):
    refused(tmp_path / "nope.safetensors", "no such file")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    refused(tmp_path / "empty.safetensors", "empty")
    (tmp_path / "noise.safetensors").write_bytes(bytes(range(256)) * 10)
    refused(tmp_path / "noise.safetensors", "not a safetensors checkpoint")
    huge_header = struct.pack("<Q", 2**60) + b"{}"
    (tmp_path / "huge.safetensors").write_bytes(huge_header)
    refused(tmp_path / "huge.safetensors", "not a safetensors checkpoint")


def test_a_pickle_is_refused_and_never_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("open(%r, 'w').write('pwned')" % str(tmp_path / "pwned"),))

    (tmp_path / "evil.safetensors").write_bytes(pickle.dumps(Evil()))
    torch.save({"weight": torch.zeros(2)}, tmp_path / "torch.safetensors")
    refused(tmp_path / "evil.safetensors", "not a safetensors checkpoint")
    refused(tmp_path / "torch.safetensors", "not a safetensors checkpoint")
    assert not (tmp_path / "pwned").exists()


def test_truncated_file_is_refused(tmp_path):
    path = good_file(tmp_path)
    raw = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[: len(raw) - 40])
    refused(tmp_path / "cut.safetensors")


def test_tampered_metadata_is_refused(tmp_path):
    path = good_file(tmp_path)
    save_file({"weight": torch.zeros(16, 6)}, str(tmp_path / "plain.safetensors"))
    refused(tmp_path / "plain.safetensors", "not a Harmonium checkpoint")
    save_file({"weight": torch.zeros(16, 6)}, str(tmp_path / "badjson.safetensors"), metadata={"harmonium": "{not json"})
    refused(tmp_path / "badjson.safetensors", "not valid JSON")
    refused(rewrite(path, tmp_path / "kind.safetensors", meta=lambda m: m.update(kind="gan")), "unknown model kind 'gan'")
    refused(rewrite(path, tmp_path / "newer.safetensors", meta=lambda m: m.update(format_version=99)), "newer Harmonium")
    refused(rewrite(path, tmp_path / "cfg.safetensors", meta=lambda m: m["config"].update(n_visible=-3)), "config is invalid")
    refused(rewrite(path, tmp_path / "cfg2.safetensors", meta=lambda m: m["config"].update(bogus=1)), "config is invalid")


def test_tampered_tensors_are_refused(tmp_path):
    path = good_file(tmp_path)
    refused(rewrite(path, tmp_path / "shape.safetensors", tensors=lambda t: t.update(weight=torch.zeros(16, 7))), "'weight' has shape [16, 7]", "[16, 6]")
    refused(rewrite(path, tmp_path / "missing.safetensors", tensors=lambda t: t.pop("hidden_bias")), "missing: hidden_bias")
    refused(rewrite(path, tmp_path / "extra.safetensors", tensors=lambda t: t.update(sneaky=torch.zeros(1))), "unexpected tensors: sneaky")
    refused(rewrite(path, tmp_path / "dtype.safetensors", tensors=lambda t: t.update(visible_bias=t["visible_bias"].double())), "float64")

    def nan(t):
        t["weight"][0, 0] = float("nan")

    refused(rewrite(path, tmp_path / "nan.safetensors", tensors=nan), "NaN")


def test_a_hybrid_saved_before_the_code_mean_existed_still_opens(tmp_path):
    """Files from the previous version lack the hybrid's `code_mean` buffer: they open, and their
    code chains fall back to plain Gibbs; any other missing tensor is still refused."""
    from models.factory import make_sampler
    from models.hybrid import HybridConfig, HybridModel
    from models.autoencoder import AEConfig
    from models.sampling import GibbsSampler
    from models.tempering import TemperedSampler

    m = HybridModel(HybridConfig(AEConfig(image_size=28, latent=8, width=4, sigmoid_codes=True), n_hidden=6))
    with torch.no_grad():
        m.code_mean.fill_(0.4)
    path = save_checkpoint(tmp_path / "h.safetensors", m)
    assert isinstance(make_sampler(load_checkpoint(path).model, 4, seed=0).gibbs, TemperedSampler)
    old = rewrite(path, tmp_path / "old.safetensors", tensors=lambda t: t.pop("code_mean"))
    model = load_checkpoint(old).model
    assert torch.equal(model.code_mean, torch.full((8,), -1.0))  # unknown
    sampler = make_sampler(model, 4, seed=0)
    assert type(sampler.gibbs) is GibbsSampler
    assert torch.equal(model.rbm.weight, m.rbm.weight)
    broken = rewrite(path, tmp_path / "broken.safetensors", tensors=lambda t: t.pop("rbm.weight"))
    refused(broken, "missing", "rbm.weight")


# ------------------------------------------------- hostile metadata (issue 13, item 1)
def nested(depth):
    return json.loads("[" * 30 + "]" * 30) if depth <= 30 else "DEEP"


#: The crafted checkpoints that crashed the process or loaded nonsense, each with the words its
#: refusal must say: (name, what it does to the metadata, raw text replacements, words).
HOSTILE = [
    ("threads", lambda m: m["trainer"]["train_config"].update(threads=100000), None, ["threads", "100000"]),
    ("kind-list", lambda m: m.update(kind=["rbm"]), None, ["kind", "['rbm']"]),
    ("preprocess-list", lambda m: m.update(preprocess=[4, 4]), None, ["preprocess", "object"]),
    ("nested", lambda m: m["extra"].update(note="DEEP"), ('"DEEP"', "[" * 100_000 + "]" * 100_000), ["nests", "32"]),
    ("nested-objects", lambda m: m.update(extra="DEEP"), ('"DEEP"', '{"a":' * 50_000 + "1" + "}" * 50_000), ["nests"]),
    ("snapshot-every-0", lambda m: m["trainer"]["train_config"].update(snapshot_every=0), None, ["snapshot_every", "got 0"]),
    ("format-version", lambda m: m.update(format_version=-7), None, ["format version", "-7"]),
    ("nan-var-floor", lambda m: m["config"].update(var_floor=float("nan")), None, ["var_floor", "nan"]),
    ("negative-step", lambda m: m["trainer"].update(step=-1000), None, ["step", "-1000"]),
    ("k-0", lambda m: m["trainer"]["train_config"].update(k=0), None, ["k must be", "got 0"]),
    ("preprocess-size", lambda m: m["preprocess"].update(size=28), None, ["1×28×28", "1×4×4"]),
    ("preprocess-colour", lambda m: m["preprocess"].update(color=True), None, ["3×4×4", "1×4×4"]),
    ("huge-integer", lambda m: m["trainer"].update(step="BIG"), ('"BIG"', "9" * 5000), ["number too long"]),
    ("seed-2**64", lambda m: m["trainer"].update(seed=2**64), None, ["seed"]),
    ("history-of-text", lambda m: m["trainer"].update(history="epoch 1"), None, ["history", "list"]),
    ("lr-1e308", lambda m: m["trainer"]["train_config"].update(learning_rate=1e308), None, ["learning_rate"]),
    ("no-image-shape", lambda m: m["config"].update(image_shape=None), None, ["image shape"]),
]


@pytest.mark.parametrize("name,change,raw,words", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_metadata_is_refused_in_one_sentence(tmp_path, name, change, raw, words):
    m, tr = trained(epochs=1)
    path = save_checkpoint(tmp_path / "good.safetensors", m, trainer=tr, preprocess={"size": 4, "color": False})
    meta = read_metadata(path)
    change(meta)
    text = json.dumps(meta)
    if raw:
        text = text.replace(*raw)
    bad = tmp_path / f"{name}.safetensors"
    save_file(load_file(path), str(bad), metadata={"harmonium": text})
    msg = refused(bad, *words)
    assert "\n" not in msg and len(msg) < 400
    with pytest.raises(CheckpointError):  # peeking at the metadata refuses it as well
        read_metadata(bad)


def test_a_fifo_and_a_lying_header_are_refused_without_waiting(tmp_path):
    import os

    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    refused(fifo, "not a regular file")  # opening it for reading would block forever
    raw = good_file(tmp_path).read_bytes()
    (tmp_path / "lies.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw[8:])
    refused(tmp_path / "lies.safetensors", "header claims")
    (tmp_path / "short.safetensors").write_bytes(b"\x01\x02")
    refused(tmp_path / "short.safetensors", "shorter than a header")


def test_a_config_asking_for_a_huge_model_allocates_nothing(tmp_path):
    """The tensors are compared with the model built on the "meta" device: a config of 16
    million × 16 million units is refused by its shapes, not by an out-of-memory."""
    path = good_file(tmp_path)
    huge = rewrite(path, tmp_path / "huge.safetensors",
                   meta=lambda m: m["config"].update(n_visible=2**24, n_hidden=2**24, image_shape=[1, 4096, 4096]))
    refused(huge, "has shape [6] but the config needs [16777216]")


def test_values_no_model_holds_are_refused(tmp_path):
    path = good_file(tmp_path)

    def huge(t):
        t["weight"][0, 0] = 3e36  # a flipped exponent bit

    refused(rewrite(path, tmp_path / "huge.safetensors", tensors=huge), "beyond ±1e+15")
    m = GaussianBernoulliRBM(RBMConfig(16, 6, (1, 4, 4)))
    gpath = save_checkpoint(tmp_path / "g.safetensors", m)

    def zero_std(t):
        t["data_std"][3] = 0.0

    refused(rewrite(gpath, tmp_path / "std.safetensors", tensors=zero_std), "'data_std'", "not positive")


# ------------------------------------------------------ resuming checks the training state
def resumable(tmp_path, **cfg):
    m, tr = trained(epochs=1, **cfg)
    return save_checkpoint(tmp_path / "r.safetensors", m, trainer=tr)


@pytest.mark.parametrize("change,words", [
    (lambda t: t.update({"trainer.extra.sampler.visible": torch.zeros(65, 16)}), ["sampler.visible", "[65, 16]", "[64, 16]"]),
    (lambda t: t.update({"trainer.extra.visible_offset": torch.zeros(16, dtype=torch.uint8)}), ["visible offset", "torch.uint8"]),
    (lambda t: t.update({"trainer.optimizer.0.momentum_buffer": torch.zeros(6, 16)}), ["optimizer.0.momentum_buffer", "[16, 6]"]),
    (lambda t: t.update({"trainer.optimizer.7.momentum_buffer": torch.zeros(6)}), ["optimizer.7", "3 parameters"]),
    (lambda t: t.update({"trainer.optimizer.0.exp_avg": torch.zeros(16, 6)}), ["exp_avg", "SGD"]),
    (lambda t: t.pop("trainer.extra.hidden_offset"), ["hidden_offset"]),
], ids=["chains", "offset-dtype", "momentum-shape", "no-such-parameter", "adam-state-in-sgd", "missing-offset"])
def test_a_training_state_that_does_not_fit_is_refused_at_resume(tmp_path, change, words):
    bad = rewrite(resumable(tmp_path), tmp_path / "bad.safetensors", tensors=change)
    ck = load_checkpoint(bad)  # the model itself is fine: it opens
    with pytest.raises(CheckpointError) as info:
        ck.make_trainer(data())
    msg = str(info.value)
    assert msg.startswith("Cannot open bad.safetensors: its training state does not fit its model")
    for w in words:
        assert w in msg, msg


def test_adam_state_must_be_whole_and_non_negative(tmp_path):
    m, tr = trained("grbm", epochs=1, optimizer="adam")  # (the binary RBM trains with SGD)
    path = save_checkpoint(tmp_path / "g.safetensors", m, trainer=tr)
    assert load_checkpoint(path).make_trainer(data()).step == tr.step

    def negative(t):
        t["trainer.optimizer.0.exp_avg_sq"][0, 0] = -1.0  # its square root would be NaN

    for change, word in [(negative, "negative"), (lambda t: t.pop("trainer.optimizer.1.exp_avg_sq"), "incomplete")]:
        ck = load_checkpoint(rewrite(path, tmp_path / "bad.safetensors", tensors=change))
        with pytest.raises(CheckpointError, match=word):
            ck.make_trainer(data())


def test_resume_refuses_images_of_another_shape_and_bad_overrides(tmp_path):
    ck = load_checkpoint(resumable(tmp_path))
    with pytest.raises(ValueError, match="trained on 1×4×4 images, these are 1×8×8"):
        ck.make_trainer(torch.zeros(10, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="snapshot_every"):
        ck.make_trainer(data(), snapshot_every=0)


def test_threads_never_exceed_the_machines_cores():
    """A saved `threads: 100000` once reached torch.set_num_threads and crashed the process; the
    trainer now asks for at most the usable cores (and checkpoints refuse such a value)."""
    from models.device import usable_cores

    m = BernoulliRBM(RBMConfig(16, 6, (1, 4, 4)))
    tr = RBMTrainer(m, data(), RBMTrainConfig(epochs=1, batch_size=20, seed=3, threads=100000))
    before = torch.get_num_threads()
    seen = {torch.get_num_threads() for _ in tr.run()}
    assert seen and max(seen) <= usable_cores()
    assert torch.get_num_threads() == before


# ------------------------------------------------ divergence in buffers (issue 13, item 5)
def tiny_hybrid(steps_per_epoch=4):
    from models.factory import Options, build

    g = torch.Generator().manual_seed(0)
    images = (torch.rand(8 * steps_per_epoch, 1, 28, 28, generator=g) * 255).to(torch.uint8)
    opts = Options(kind="hybrid", image_shape=(1, 28, 28), hidden=6, latent=4, epochs=2, batch_size=8, seed=0,
                   frame_every=0, n_chains=4, extra={"width": 2, "rbm_epochs": 1, "threads": 1})
    return build(opts, images, "cpu"), images


def test_a_model_with_nan_in_a_buffer_is_never_saved_and_never_opened(tmp_path):
    trainer, _ = tiny_hybrid()
    model = trainer.model
    with torch.no_grad():
        model.autoencoder.code_norm.running_var[1] = float("nan")
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(tmp_path / "h.safetensors", model, trainer=trainer)
    assert "'autoencoder.code_norm.running_var'" in str(info.value) and "NaN" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary left

    with torch.no_grad():
        model.autoencoder.code_norm.running_var[1] = 1.0
    path = save_checkpoint(tmp_path / "h.safetensors", model)

    def nan(t):
        t["autoencoder.code_norm.running_var"][1] = float("nan")

    refused(rewrite(path, tmp_path / "nan.safetensors", tensors=nan), "'autoencoder.code_norm.running_var'", "NaN")

    def negative(t):
        t["autoencoder.code_norm.running_var"][1] = -1.0

    refused(rewrite(path, tmp_path / "neg.safetensors", tensors=negative), "running_var", "negative variance")


def test_a_run_stopped_with_nan_in_a_buffer_keeps_its_last_good_state(tmp_path):
    """The batch norm's running variance turns NaN mid-epoch (no check has run yet) and the run
    is stopped: the trainer rolls back as it stops, so the model saves and reopens."""
    trainer, _ = tiny_hybrid()
    run = trainer.run()
    for event in run:
        if event.kind == "epoch":  # a checked, snapshotted state at step 4
            break
    good = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    next(run)  # step 5
    with torch.no_grad():
        trainer.model.autoencoder.code_norm.running_var.fill_(float("nan"))
    run.close()
    assert trainer.last_rollback == (5, 4)
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, good[k]), k
    path = save_checkpoint(tmp_path / "h.safetensors", trainer.model, trainer=trainer)
    back = load_checkpoint(path)
    assert torch.equal(back.model.autoencoder.code_norm.running_var, good["autoencoder.code_norm.running_var"])


# ------------------------------------------------------------------ the seed race (item 7)
def test_two_seeded_builds_in_two_threads_get_their_seeds_weights(monkeypatch):
    """`factory.build` seeded torch's global generator from each job's thread, so two jobs
    started together took each other's random numbers. The builder is made to wait (0.3 s at
    most) for the other job to be inside it too: unguarded, both would then be seeded before
    either draws, and one job's weights would come from the other's seed. Now each gets what it
    gets alone, and the caller's global stream does not move."""
    import dataclasses
    import threading

    import models.factory as factory
    from models import kinds

    images = data(40)
    real = kinds.KINDS["rbm"]
    meet = threading.Barrier(2, timeout=0.3)

    def builder(kind, options, data, device):
        try:
            meet.wait()  # unguarded: both seeded by now
        except threading.BrokenBarrierError:  # guarded: the other job waits outside for the lock
            pass
        return real.builder(kind, options, data, device)

    def weights(seed):
        opts = factory.Options(kind="rbm", image_shape=(1, 4, 4), hidden=300, epochs=1, batch_size=10, seed=seed, n_chains=4)
        return factory.build(opts, images, "cpu").model.weight.detach().clone()

    alone = {seed: weights(seed) for seed in (1, 2)}
    monkeypatch.setitem(kinds.KINDS, "rbm", dataclasses.replace(real, builder=builder))
    got: dict[int, torch.Tensor] = {}
    threads = [threading.Thread(target=lambda s=s: got.__setitem__(s, weights(s))) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torch.equal(got[1], alone[1]) and torch.equal(got[2], alone[2])
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    weights(7)
    assert torch.equal(torch.rand(3), expected)


def test_a_save_that_would_not_reopen_is_refused(tmp_path):
    m, tr = trained(epochs=1)
    with pytest.raises(CheckpointError, match="Cannot save x.safetensors: .*source"):
        save_checkpoint(tmp_path / "x.safetensors", m, extra={"source": ["not", "text"]})
    with pytest.raises(CheckpointError, match="preprocessing makes 1×28×28 images"):
        save_checkpoint(tmp_path / "x.safetensors", m, preprocess={"size": 28})
    assert list(tmp_path.iterdir()) == []
