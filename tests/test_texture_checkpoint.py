"""The texture RBM's checkpoints through its record in models.kinds (issue 15): a saved texture
model reopens, dreams and resumes where it stopped, and the mutations of the checkpoint fuzz
(tests/test_checkpoint_fuzz.py) applied to a texture checkpoint either load and work or are
refused with one CheckpointError sentence."""
from __future__ import annotations

import json
import random
import traceback
from collections import Counter

import pytest
import torch

import test_checkpoint_fuzz as fuzz
from models.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from models.factory import Options, build, make_sampler, sample_images

CASES = 100
SEED = 20261201


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def texture_images(n: int = 1, size: int = 16, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, size, size, generator=g) * 255).to(torch.uint8)


def tiny_trainer(data: torch.Tensor, epochs: int = 1):
    opts = Options(kind="texture", image_shape=tuple(data.shape[1:]), hidden=2, epochs=epochs, seed=0, frame_every=0,
                   extra={"filter_size": 3, "crop": 16, "steps_per_epoch": 3, "n_chains": 2, "k": 1, "threads": 1})
    return build(opts, data, "cpu")


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> tuple[bytes, torch.Tensor]:
    """The bytes of a small trained texture checkpoint (no clock in them) and its one image."""
    data = texture_images()
    trainer = tiny_trainer(data)
    trainer.fit()
    path = tmp_path_factory.mktemp("texture") / "texture.safetensors"
    save_checkpoint(path, trainer.model, trainer=trainer, preprocess={"size": 16, "color": False}, extra={"source": "fuzz"})
    raw = path.read_bytes()
    meta = fuzz.meta_of(raw)
    meta["created"], meta["trainer"]["elapsed"] = "2026-01-01T00:00:00+00:00", 1.0
    return fuzz.with_meta_text(raw, json.dumps(meta)), data


def test_a_saved_texture_model_reopens_dreams_at_any_size_and_resumes(tmp_path):
    data = texture_images()
    trainer = tiny_trainer(data, epochs=2)
    run = trainer.run()
    for event in run:
        if event.kind == "epoch":  # stopped after the first epoch, saved, reopened
            break
    run.close()
    path = save_checkpoint(tmp_path / "t.safetensors", trainer.model, trainer=trainer, preprocess={"size": 16, "color": False})
    meta = read_metadata(path)
    assert meta["kind"] == "texture" and meta["trainer"]["step"] == 3 and meta["trainer"]["extra"] == {}
    ck = load_checkpoint(path)
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(ck.model.state_dict()[name], value), name
    assert {"extra.sampler.visible", "extra.average_count", "extra.raw.weight"} <= set(ck.trainer_tensors)
    # dreams: at the training size by default, at any size asked (whole pooling blocks)
    assert sample_images(ck.model, 2, steps=2).shape == (2, 1, 16, 16)
    assert sample_images(ck.model, 1, steps=2, size=(20, 36)).shape == (1, 1, 20, 36)
    assert make_sampler(ck.model, n_chains=1, size=(24, 40)).images().shape == (1, 1, 24, 40)
    # resumes where it stopped: the same weights as the run that went on uninterrupted
    resumed = ck.make_trainer(data, "cpu")
    assert resumed.step == 3
    resumed.fit()
    trainer.fit()
    assert resumed.step == trainer.step == 6
    for name, value in trainer.model.state_dict().items():
        assert torch.allclose(resumed.model.state_dict()[name], value, atol=1e-6), name


def test_size_is_refused_for_kinds_that_dream_at_their_own_size():
    from models.rbm import BernoulliRBM, RBMConfig

    rbm = BernoulliRBM(RBMConfig(16, 4, image_shape=(1, 4, 4)))
    with pytest.raises(ValueError, match="only a texture model samples at any size"):
        make_sampler(rbm, n_chains=1, size=(64, 64))
    with pytest.raises(ValueError, match="only a texture model samples at any size"):
        sample_images(rbm, 1, size=(64, 64))


def test_mutated_texture_checkpoints_load_and_work_or_are_refused(original, tmp_path):
    raw, data = original
    assert fuzz.usable(fuzz._write(tmp_path, "original", raw), data) == "loaded, used, resumed a step"
    counts: Counter[str] = Counter()
    failures = []
    rng = random.Random(SEED)
    for i in range(CASES):
        mutate = fuzz.MUTATIONS[i % len(fuzz.MUTATIONS)] if i < len(fuzz.MUTATIONS) else rng.choice(fuzz.MUTATIONS)
        case = f"texture-{i}-{mutate.__name__}"
        path = fuzz._write(tmp_path, case, mutate(random.Random(f"{SEED}-{case}"), raw, None))
        try:
            outcome = fuzz.usable(path, data)
        except Exception:  # anything but CheckpointError is a failure of the boundary
            failures.append(f"{case}: {traceback.format_exc(limit=-3)}")
            outcome = "FAILED"
        counts[outcome] += 1
        path.unlink()
    print(f"\ntexture checkpoint fuzz: {CASES} mutated files (seed {SEED}): {dict(counts.most_common())}")
    assert not failures, "\n".join(failures)
    assert counts["refused at load"] > CASES // 3
    assert counts["loaded, used, resumed a step"] > 5


def test_a_texture_trainer_state_from_another_run_is_refused(original, tmp_path):
    """Chains of another torus (a file whose training settings ask for bigger chains) are
    refused when resuming, in one sentence."""
    raw, data = original
    meta = fuzz.meta_of(raw)
    meta["trainer"]["train_config"]["chain_size"] = 32
    path = fuzz._write(tmp_path, "chains", fuzz.with_meta_text(raw, json.dumps(meta)))
    ck = load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"^Cannot open chains.safetensors: its training state does not fit"):
        ck.make_trainer(data, "cpu")
