"""The texture trainer's short-run chains (`ConvRBMTrainConfig.short_run`, issue 15): chains
started from noise every step and run as `synthesize` runs its sampler (the first half of the
sweeps annealed from T = 2 down to 1), whose final states join the negative phase."""
from __future__ import annotations

import pytest
import torch

from models.conv_rbm import ConvRBM, ConvRBMConfig, ConvRBMError, ConvRBMTrainConfig, ConvRBMTrainer
from models.conv_rbm import trainer as trainer_module


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_trainer(**cfg) -> ConvRBMTrainer:
    g = torch.Generator().manual_seed(0)
    data = (torch.rand(1, 1, 32, 32, generator=g) * 255).to(torch.uint8)
    torch.manual_seed(0)
    model = ConvRBM(ConvRBMConfig(channels=1, n_filters=4, filter_size=5, image_shape=(1, 32, 32)))
    base = dict(epochs=1, steps_per_epoch=3, batch_size=2, crop=16, k=1, n_chains=2, seed=0, threads=1, frame_every=0,
                grad_clip=None, average=0.0)
    base.update(cfg)
    return ConvRBMTrainer(model, data, ConvRBMTrainConfig(**base))


class Recording(trainer_module.ConvGibbsSampler):
    """The trainer's sampler class, remembering each short-run chain's start and temperatures."""
    made: list["Recording"] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.start = self.visible.clone()
        self.temperatures: list[float] = []
        Recording.made.append(self)

    def _sweep(self, t: float) -> None:
        self.temperatures.append(t)
        super()._sweep(t)


def test_short_run_chains_start_from_noise_every_step_and_follow_the_synthesize_schedule(monkeypatch):
    trainer = make_trainer(short_run=3, short_run_sweeps=6, short_run_size=12)
    trainer.prepare()
    monkeypatch.setattr(trainer_module, "ConvGibbsSampler", Recording)
    Recording.made = []
    for _ in trainer.run():
        pass
    assert len(Recording.made) == 3  # one fresh set of chains per step
    for s in Recording.made:
        assert s.visible.shape == (3, 1, 12, 12) and s.steps_taken == 6
        # the first half annealed geometrically from 2 down to 1, then at 1
        assert s.temperatures == pytest.approx([2.0, 2.0 ** 0.5, 1.0, 1.0, 1.0, 1.0])
    # from new noise each step (drawn from the visible biases: mean 0, σ² 0.3 at the start)
    starts = [s.start for s in Recording.made]
    assert not torch.equal(starts[0], starts[1]) and not torch.equal(starts[1], starts[2])
    assert abs(float(starts[0].mean())) < 0.2 and 0.4 < float(starts[0].std()) < 0.7
    # the chains moved from their start, and are not the persistent chains
    assert not torch.equal(trainer.short_chains, starts[-1])
    assert trainer.short_chains.shape != trainer.sampler.visible.shape


def test_the_same_step_draws_the_same_short_run_chains():
    """Fixed by (seed, step): a resumed run draws what an uninterrupted one draws."""
    a, b = make_trainer(short_run=2, short_run_sweeps=4), make_trainer(short_run=2, short_run_sweeps=4)
    for t in (a, b):
        t.prepare()
        t.step = 7
    assert torch.equal(a._short_run(), b._short_run())
    a.step = 8
    assert not torch.equal(a._short_run(), b.short_chains)


@pytest.mark.parametrize("weight", [1.0, 0.5])
def test_short_run_states_enter_the_gradient(weight, monkeypatch):
    """The visible bias's gradient is that of F(crops) - (1 - w)·F(persistent chains) - w·F(short-run
    chains), computed here by hand from the states the step used."""
    trainer = make_trainer(short_run=2, short_run_sweeps=4, short_run_weight=weight, sparsity_cost=0.0)
    trainer.prepare()
    m = trainer.model
    seen = {}
    run = trainer.run()
    next(e for e in run if e.kind == "step")  # the optimiser exists after the first step
    step = trainer.step
    real = trainer.optimizer.step

    def record(*args, **kwargs):
        seen["grad"] = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
        seen["params"] = {n: p.detach().clone() for n, p in m.named_parameters()}
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer.optimizer, "step", record)
    next(e for e in run if e.kind == "step")
    run.close()
    assert trainer.step == step + 1
    with torch.no_grad():
        for n, p in m.named_parameters():
            p.copy_(seen["params"][n])
    batch = trainer.data.index_select(0, trainer.batch_indices(step))
    v0 = m.images_to_visible(trainer._crops(batch, step))
    m.zero_grad(set_to_none=True)
    negative = (1 - weight) * m.free_energy_density(trainer.sampler.visible).mean() \
        + weight * m.free_energy_density(trainer.short_chains).mean()
    (m.free_energy_density(v0, periodic=False).mean() - negative).backward()
    for n in ("visible_bias", "weight", "hidden_bias"):
        got, want = seen["grad"][n], getattr(m, n).grad
        assert torch.allclose(got, want, atol=1e-5), (n, got.flatten()[:4], want.flatten()[:4])
    # and the short-run term counts: without it the gradient differs
    m.zero_grad(set_to_none=True)
    (m.free_energy_density(v0, periodic=False).mean() - m.free_energy_density(trainer.sampler.visible).mean()).backward()
    assert not torch.allclose(seen["grad"]["visible_bias"], m.visible_bias.grad, atol=1e-4)


def test_short_run_every_m_steps_and_off_with_0(monkeypatch):
    calls = []
    real = ConvRBMTrainer._short_run
    monkeypatch.setattr(ConvRBMTrainer, "_short_run", lambda self: calls.append(self.step) or real(self))
    trainer = make_trainer(short_run=1, short_run_sweeps=2, short_run_every=2, steps_per_epoch=5)
    trainer.fit()
    assert calls == [0, 2, 4]
    calls.clear()
    trainer = make_trainer(short_run=0)
    trainer.fit()
    assert calls == [] and trainer.short_chains is None


@pytest.mark.parametrize("bad", [dict(short_run=-1), dict(short_run=1.5), dict(short_run_sweeps=0),
                                 dict(short_run_every=0), dict(short_run_weight=1.5), dict(short_run_size=-4)])
def test_bad_short_run_settings_are_refused(bad):
    with pytest.raises(ConvRBMError):
        make_trainer(**bad)


def test_the_training_frames_show_the_short_run_chains_when_they_alone_train():
    trainer = make_trainer(short_run=2, short_run_sweeps=4, short_run_weight=1.0)
    trainer.fit()
    assert trainer.sampler.steps_taken == 0  # not stepped: the short-run chains replace them
    frame = trainer.frame()
    assert frame.shape == (2, 1, 16, 16)
    assert torch.allclose(frame, trainer._short_sampler.images("probs"))
    mixed = make_trainer(short_run=2, short_run_sweeps=4, short_run_weight=0.5)
    mixed.fit()
    assert torch.allclose(mixed.frame(), mixed.sampler.images("probs"))


def test_a_run_with_short_run_chains_saves_and_resumes_as_if_uninterrupted(tmp_path):
    from models.checkpoint import load_checkpoint, save_checkpoint
    from models.factory import Options, build

    g = torch.Generator().manual_seed(1)
    data = (torch.rand(1, 1, 16, 16, generator=g) * 255).to(torch.uint8)
    opts = Options(kind="texture", image_shape=(1, 16, 16), hidden=2, epochs=2, seed=0, frame_every=0,
                   extra={"filter_size": 3, "crop": 16, "steps_per_epoch": 3, "n_chains": 2, "k": 1, "threads": 1,
                          "short_run": 2, "short_run_sweeps": 4, "short_run_weight": 1.0})
    trainer = build(opts, data, "cpu")
    run = trainer.run()
    next(e for e in run if e.kind == "epoch")
    run.close()
    path = save_checkpoint(tmp_path / "t.safetensors", trainer.model, trainer=trainer, preprocess={"size": 16, "color": False})
    resumed = load_checkpoint(path).make_trainer(data, "cpu")
    assert resumed.config.short_run == 2 and resumed.config.short_run_weight == 1.0
    resumed.fit()
    trainer.fit()
    assert resumed.step == trainer.step == 6
    for name, value in trainer.model.state_dict().items():
        assert torch.allclose(resumed.model.state_dict()[name], value, atol=1e-6), name
