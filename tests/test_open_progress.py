"""An opened checkpoint shows its run's progress as saved (issue 16, item 6), not "0 %"."""
from __future__ import annotations

import torch

from models.checkpoint import save_checkpoint
from models.factory import Options, build
from studio.dataset import Preprocess
from studio.jobs import Session


def _stopped_run(tmp_path, kind: str, epochs: int, stop_after_epochs: int):
    g = torch.Generator().manual_seed(0)
    data = (torch.rand(40, 1, 28, 28, generator=g) * 255).to(torch.uint8)
    trainer = build(Options(kind=kind, image_shape=(1, 28, 28), epochs=epochs, seed=0, frame_every=0), data)
    run = trainer.run()
    for ev in run:
        if ev.kind == "epoch" and ev.epoch >= stop_after_epochs:
            run.close()  # stopping is closing the generator
            break
    return trainer, save_checkpoint(tmp_path / f"{kind}.safetensors", trainer.model, trainer=trainer)


def test_a_run_stopped_part_way_opens_with_its_total_and_step(tmp_path):
    trainer, path = _stopped_run(tmp_path, "rbm", epochs=5, stop_after_epochs=2)
    job = Session(Preprocess(size=28)).open_model(path)
    u = job.update(frame=False)
    assert (u.step, u.total_steps) == (trainer.step, trainer.total_steps)
    assert 0 < u.step < u.total_steps and u.state == "stopped"


def test_a_run_made_of_phases_opens_with_its_step_and_no_made_up_total(tmp_path):
    trainer, path = _stopped_run(tmp_path, "hybrid", epochs=3, stop_after_epochs=1)
    u = Session(Preprocess(size=28)).open_model(path).update(frame=False)
    assert u.step == trainer.step > 0
    assert u.total_steps in (0, trainer.total_steps)  # unknown, or right: never a wrong number
