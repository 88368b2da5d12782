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
