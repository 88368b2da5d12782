"""The kind registry (models/kinds.py): one record per kind, and every place that takes a kind
offers exactly `KINDS`, each with the capability its record declares."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models import kinds
from models.checkpoint import Rule, load_checkpoint, save_checkpoint
from models.factory import Options, build, evaluate, make_sampler
from models.kinds import KINDS, ModelKind
from models.rbm import BernoulliRBM
from models.vae import default_latent
from models.training import Trainer
from studio.jobs import Session, TrainingJob, hyperparameters

ROOT = Path(__file__).resolve().parents[1]
SIZE = 28


def images(n: int = 24, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, SIZE, SIZE), dtype=torch.uint8, generator=g)


def tiny(key: str, **settings) -> Trainer:
    """A small model of `key` and its trainer (seeded), the kind's defaults otherwise."""
    extra = {"width": 4} if key in ("ae", "vae", "hybrid") else {}
    options = Options(kind=key, image_shape=(1, SIZE, SIZE), epochs=1, batch_size=8, seed=0, n_chains=4,
                      frame_every=0, extra=extra, **settings)
    return build(options, images())


@pytest.fixture(scope="module")
def models_by_kind() -> dict[str, torch.nn.Module]:
    return {key: tiny(key, hidden=8, latent=4).model for key in KINDS}


# --------------------------------------------------------------------------- the records
def test_every_record_names_classes_that_exist_and_fit_together():
    assert kinds.keys() == ("rbm", "grbm", "ae", "vae", "hybrid", "texture")
    assert len({r.title for r in KINDS.values()}) == len(KINDS)
    for key, record in KINDS.items():
        assert record.key == key and record.load() is record
        assert record.model_class.kind == key  # what a checkpoint records
        assert dataclasses.is_dataclass(record.config_class) and dataclasses.is_dataclass(record.train_config_class)
        assert issubclass(record.trainer_class, Trainer)
        assert record.trainer_extra_schema is None or isinstance(record.trainer_extra_schema, Rule)
        assert not record.texture or record.dreams  # a texture is dreamt
    assert kinds.keys("explorable") == ("ae", "vae", "hybrid")
    assert kinds.keys("texture") == ("rbm", "grbm", "vae", "hybrid", "texture")
    assert kinds.keys("scorable") == ("rbm",)


def test_lookups_refuse_what_is_not_there_in_one_sentence():
    with pytest.raises(ValueError, match=r"^unknown model kind 'gan' \(known: rbm, grbm, ae, vae, hybrid, texture\)$"):
        kinds.kind("gan")
    with pytest.raises(ValueError, match="unknown model kind None"):
        kinds.kind(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown capability 'flies'"):
        kinds.keys("flies")
    with pytest.raises(ValueError, match="unknown model kind 'gan'"):
        build(Options(kind="gan"), images())
    with pytest.raises(ValueError, match="unknown model kind 'gan'"):
        hyperparameters("gan")
    with pytest.raises(ValueError, match="cannot build a 'vae' model"):
        KINDS["vae"].build(Options(kind="rbm"), images())
    record = kinds.kind("rbm")
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.title = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        record.defaults["learning_rate"] = 1.0  # type: ignore[index]
    with pytest.raises(KeyError, match="no setting 'nonsense'"):
        record.default("nonsense")


def test_the_registry_the_cli_parser_and_the_studio_launcher_import_no_torch():
    """`harmonium scan` and `--help` (0.07 s) and the window (shown before torch loads) read the
    kinds without importing torch (1 s)."""
    code = ("import sys; import models.kinds, studio.cli, studio.app; studio.cli.parser(); "
            "studio.app.parse_args([]); print(sorted(m for m in ('torch', 'models.rbm', 'models.vae') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ defaults, said once
@pytest.mark.parametrize("key", list(KINDS))
def test_forms_and_builds_take_their_defaults_from_the_record(key):
    record = KINDS[key]
    form = {p.key: p.default for p in hyperparameters(key)}
    trainer = tiny(key)
    assert form["learning_rate"] == record.default("learning_rate") == trainer.config.learning_rate
    if key == "vae":  # "auto": the latent size follows the number of images (models.vae.default_latent)
        assert form["latent"] == 0 and trainer.model.latent == default_latent(len(images()))
    elif "latent" in form:
        assert form["latent"] == record.default("latent") == int(getattr(trainer.model, "latent", None)
                                                                  or trainer.model.config.latent)
    for name in ("k", "persistent", "beta", "kl_warmup_epochs", "loss", "n_hidden"):
        if name in form:
            assert form[name] == record.default(name), name
    expected = {"rbm": (0.01, True), "grbm": (1e-3, False)}.get(key)
    if expected is not None:  # the RBMs' own recipe, over RBMTrainConfig's defaults
        assert (trainer.config.learning_rate, trainer.config.centering) == expected
        assert trainer.config.optimizer == ("adam" if key == "grbm" else "sgd")
    if key == "hybrid":  # inside its nested autoencoder config
        assert record.default("latent") == 16 and record.default("n_hidden") == 64


# --------------------------------------------------------------- capabilities are true
@pytest.mark.parametrize("key", list(KINDS))
def test_each_capability_is_what_the_model_can_do(key, models_by_kind):
    from studio.latent import LatentExplorer

    record, model = KINDS[key], models_by_kind[key]
    assert TrainingJob(model=model, kind=key).can_dream is record.dreams
    if record.dreams:
        sampler = make_sampler(model, n_chains=2, seed=0)
        sampler.step(1)
        assert torch.isfinite(sampler.images("probs").float()).all()
    else:
        with pytest.raises(ValueError, match="has no sampler"):
            make_sampler(model, n_chains=2, seed=0)
    if record.explorable:
        assert LatentExplorer(model, images(8)).latent_dim == 4
    else:
        with pytest.raises(ValueError, match="no latent space to explore"):
            LatentExplorer(model)
    metrics = evaluate(model, images(8), ais_runs=2, ais_betas=20, seed=0, base_images=images())
    assert ("log_likelihood" in metrics) is record.scorable
    filters = TrainingJob(model=model, kind=key).weight_filters()
    assert (filters is not None) is record.filters


def test_every_studio_place_that_takes_a_kind_offers_exactly_the_registry(qtbot, models_by_kind):
    from studio import cli
    from studio.ui.canvas import model_choices
    from studio.ui.training_panel import TrainingPanel
    from studio.ui.workers import JobsController

    train = next(a for a in cli.parser()._subparsers._group_actions[0].choices["train"]._actions if a.dest == "model")
    assert tuple(train.choices) == kinds.keys()
    session = Session()
    panel = TrainingPanel(session, JobsController(session))
    qtbot.addWidget(panel)
    assert tuple(panel.pages) == kinds.keys()
    assert [panel.kind_box.itemText(i) for i in range(panel.kind_box.count())] == [r.title for r in KINDS.values()]
    assert {k: page._filters_mode for k, page in panel.pages.items()} == {k: r.filters for k, r in KINDS.items()}
    for key, model in models_by_kind.items():
        session.add_job(TrainingJob(model=model, kind=key, title=KINDS[key].title))
    assert sorted(c.kind for c in model_choices(session)) == sorted(kinds.keys("texture"))


def test_the_launcher_names_every_kind(capsys):
    from studio import app

    with pytest.raises(SystemExit):
        app.parse_args(["--help"])
    assert f"({', '.join(kinds.keys())})" in " ".join(capsys.readouterr().out.split())


# ----------------------------------------------------------- a new kind is one record
class TinyRBM(BernoulliRBM):
    """A new kind for the test: a binary RBM under another name."""

    kind = "tiny"


def test_a_new_kind_is_one_record(monkeypatch, tmp_path, qtbot):
    """Registered with one record, a kind builds, saves, reopens and resumes, and the CLI, the
    forms and the training panel offer it."""
    from studio import cli
    from studio.ui.training_panel import TrainingPanel
    from studio.ui.workers import JobsController

    record = dataclasses.replace(KINDS["rbm"], key="tiny", title="Tiny RBM", model=f"{__name__}:TinyRBM")
    assert isinstance(record, ModelKind)
    monkeypatch.setitem(KINDS, "tiny", record)
    trainer = tiny("tiny", hidden=8)
    assert type(trainer.model) is TinyRBM and trainer.config.learning_rate == 0.01
    trainer.fit()
    path = save_checkpoint(tmp_path / "tiny.safetensors", trainer.model, trainer=trainer)
    ck = load_checkpoint(path)
    assert ck.kind == "tiny" and type(ck.model) is TinyRBM
    assert torch.equal(ck.model.weight, trainer.model.weight)
    resumed = ck.make_trainer(images(), "cpu", epochs=2)
    assert resumed.step == trainer.step and resumed.total_steps > trainer.step
    train = next(a for a in cli.parser()._subparsers._group_actions[0].choices["train"]._actions if a.dest == "model")
    assert "tiny" in train.choices
    assert {p.key: p.default for p in hyperparameters("tiny")}["learning_rate"] == 0.01
    session = Session()
    panel = TrainingPanel(session, JobsController(session))
    qtbot.addWidget(panel)
    assert panel.page("tiny").title == "Tiny RBM"


def test_the_binary_rbm_draws_binary_images_from_grey_ones_only():
    """Grey levels are trained on as fresh binary draws; binary images are their own draws, so
    nothing is drawn for them (it only moved the chains' random stream); an explicit option wins."""
    import torch

    from models.factory import Options, build

    g = torch.Generator().manual_seed(0)
    grey = torch.randint(0, 256, (40, 1, 28, 28), generator=g, dtype=torch.uint8)
    binary = (grey > 127).to(torch.uint8) * 255
    opts = dict(kind="rbm", image_shape=(1, 28, 28), seed=0, epochs=1)
    assert build(Options(**opts), grey).config.sample_data is True
    assert build(Options(**opts), binary).config.sample_data is False
    assert build(Options(**opts, extra={"sample_data": True}), binary).config.sample_data is True
    assert build(Options(**{**opts, "kind": "grbm"}), grey).config.sample_data is False


def test_the_training_form_sets_how_often_pcd_chains_restart():
    """The form's "Restart chains every": auto keeps the kind's default (a Gaussian RBM on more
    than 4,096 pixel values restarts each chain every 100 updates), 0 never, N every N."""
    from studio.dataset.records import Preprocess

    session = Session(Preprocess(size=40, color=True))  # 4,800 values: above the threshold
    session.open_images(None)  # the demo set
    spec = {p.key: p for p in hyperparameters("grbm")}["restart_every"]
    assert spec.default == -1 and spec.coerce(-1) is None and spec.coerce(0) == 0
    got = {}
    for shown in (-1, 0, 7):
        options = session.options_for("grbm", {"restart_every": shown, "epochs": 1})
        got[shown] = build(options, torch.from_numpy(session.images.images[:16])).config.restart_every
    assert got == {-1: 100, 0: 0, 7: 7}
    rbm = session.options_for("rbm", {"restart_every": 25, "epochs": 1})
    assert build(rbm, torch.from_numpy(session.images.images[:16])).config.restart_every == 25
