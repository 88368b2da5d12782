"""The document (studio.jobs.Session) holds the studio's state and runs headless: images, runs,
the current run, the canvas, what the Dreams and Latent tabs show, the project's file; its
changes are announced through psygnal signals. The whole round trip (images in, a tiny job, a
canvas composed from it, a project saved and reopened) runs with no Qt module imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from studio.jobs import Session

ROOT = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter: pytest-qt imports Qt into this one.
HEADLESS = textwrap.dedent('''
    import json, sys
    from pathlib import Path

    import numpy as np
    from PIL import Image

    root = Path(sys.argv[1])
    folder = root / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):  # a tiny set: stripes of two widths, with noise
        a = np.zeros((16, 16), np.uint8)
        a[:, :: 2 + i % 2] = 220
        a = np.clip(a.astype(int) + rng.integers(0, 30, a.shape), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(folder / f"im{i:02d}.png")

    import torch
    from studio.canvas.sources import detach_model
    from studio.dataset import Preprocess
    from studio.jobs import JobState, Session

    doc = Session(Preprocess(size=16))
    seen = []
    for name in ("images", "job_added", "current_job", "dreams", "project_path"):
        getattr(doc.events, name).connect(lambda *args, name=name: seen.append(name))
    doc.open_images([str(folder)])
    assert doc.images is not None and doc.images.images.shape == (12, 1, 16, 16)

    job = doc.new_job("rbm", {"hidden": 16, "epochs": 2, "batch_size": 4, "n_chains": 8, "seed": 3})
    doc.set_current_job(job)
    job.start()
    events = list(job.iterate())
    assert events[-1].kind == "done" and job.state is JobState.DONE and job.step > 0

    # the canvas: the run's dreams, as the Dreams tab would show them, become a layer
    dreams = doc.dream(detach_model(job.model, job.step_lock), {"kind": job.kind, "job_id": job.id},
                       n_chains=4, seed=5)
    frame = dreams.step()
    assert frame is not None and frame.n_chains == 4
    rgba, prov = doc.dream_snapshot()
    assert rgba.dtype == np.uint8 and rgba.shape[2] == 4 and prov["model"] == "rbm"
    layer = doc.add_snapshot_layer(rgba, prov)
    assert doc.canvas.layers == (layer,) and layer.scale >= 1 and layer.scale == int(layer.scale)
    composite = doc.canvas.render_uint8().copy()
    x0, y0, x1, y1 = doc.canvas.layer_bounds(layer)
    assert (x0, y0) == (layer.x, layer.y) and x0 > 0 and y0 > 0  # centred
    inside = composite[y0:y1, x0:x1, :3]
    assert (composite[:y0, :, :3] == 255).all() and inside.std() > 0  # white around, dreams inside

    out = doc.save_project(root / "tiny.harmonium")
    assert out.is_file() and doc.project_path == out

    again = Session()
    again.open_project(out)
    assert again.project_path == out
    assert np.array_equal(again.canvas.render_uint8(), composite)  # the same pixels
    (opened,) = again.jobs
    assert opened.kind == "rbm" and torch.equal(opened.model.weight, job.model.weight)
    assert np.array_equal(again.images.images, doc.images.images)
    assert again.canvas.can_undo  # opening is one step: Ctrl+Z brings the empty canvas back
    again.canvas.undo()
    assert again.canvas.layers == ()

    qt = sorted(m for m in sys.modules if m.startswith(("PySide6", "shiboken6")))
    print(json.dumps({"qt": qt, "seen": seen, "steps": job.step, "layer_px": int((x1 - x0) * (y1 - y0))}))
''')


def test_the_whole_document_runs_headless_without_qt(tmp_path):
    run = subprocess.run([sys.executable, "-c", HEADLESS, str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["qt"] == []  # not a single Qt module was imported
    assert report["seen"] == ["images", "job_added", "current_job", "dreams", "project_path"]
    assert report["steps"] > 0 and report["layer_px"] > 0
    assert (tmp_path / "tiny.harmonium").stat().st_size > 1000


# ----------------------------------------------------------------------------- events


def _recorder(doc: Session) -> list[tuple[str, tuple]]:
    seen: list[tuple[str, tuple]] = []
    doc.events.all.connect(lambda info: seen.append((info.signal.name, info.args)))
    return seen


def test_each_change_is_announced_once_with_what_changed(tmp_path):
    from studio.jobs import TrainingJob

    doc = Session()
    seen = _recorder(doc)
    job = TrainingJob(model=object(), kind="rbm")
    doc.add_job(job)
    doc.set_current_job(job)
    doc.set_current_job(job)  # no change: no news
    doc.set_project_path(tmp_path / "a.harmonium")
    doc.set_project_path(str(tmp_path / "a.harmonium"))  # the same file
    doc.set_current_job(None)
    assert seen == [("job_added", (job,)), ("current_job", (job,)),
                    ("project_path", (tmp_path / "a.harmonium",)), ("current_job", (None,))]
    assert doc.job_by_id(job.id) is job and doc.job_by_id(-1) is None


def test_a_model_that_cannot_dream_leaves_the_dreams_empty():
    from models.autoencoder import AEConfig, ConvAutoencoder

    doc = Session()
    seen = _recorder(doc)
    with pytest.raises(ValueError, match="Dreams tab needs"):
        doc.dream(ConvAutoencoder(AEConfig(image_size=28, latent=4, width=4)))
    assert doc.dreams is None and doc.dream_snapshot() is None and seen == []


def test_replacing_the_canvas_is_one_undo_step_on_the_same_canvas():
    from studio.canvas import Canvas, Layer

    doc = Session(canvas=Canvas(40, 30))
    canvas = doc.canvas
    mine = doc.add_layer(Layer(source=np.full((4, 4), 0.5, np.float32), name="mine"), center=True)
    assert (mine.x, mine.y) == (18, 13)  # centred
    other = Canvas(20, 10, background=None)
    other.add_layer(Layer(source=np.zeros((2, 2), np.float32), name="theirs"))
    doc.replace_canvas(other, "Open project")
    assert doc.canvas is canvas and (canvas.width, canvas.height, canvas.background) == (20, 10, None)
    assert [layer.name for layer in canvas.layers] == ["theirs"] and canvas.undo_label == "Open project"
    canvas.undo()
    assert [layer.name for layer in canvas.layers] == ["mine"] and (canvas.width, canvas.height) == (40, 30)


# ----------------------------------------------------------------------------- views
# The views are built from a document: what changes in it shows in them, and what the person
# does in them changes it.


@pytest.fixture
def app(qtbot):
    from studio.app import make_application

    return make_application()


def _tiny_rbm():
    import torch

    from models.rbm import BernoulliRBM, RBMConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return BernoulliRBM(RBMConfig(64, 16, (1, 8, 8)))


def test_the_canvas_view_shows_a_layer_added_headless_and_its_edits_reach_the_document(app, qtbot):
    from studio.canvas import Canvas, Layer
    from studio.ui.canvas import CanvasView

    doc = Session(canvas=Canvas(32, 24, background=(1.0, 1.0, 1.0, 1.0)))
    view = CanvasView(doc)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    assert view.canvas is doc.canvas  # the document's, not one of its own
    red = np.zeros((4, 6, 4), np.uint8)
    red[..., 0] = red[..., 3] = 255
    layer = doc.add_layer(Layer(source=red, name="red"), center=True)  # headless: no view involved
    qtbot.waitUntil(lambda: view.is_current() and view.layer_list.count() == 1, timeout=10_000)
    assert view.selected_id == layer.id
    shown = view.shown_pixels
    assert tuple(shown[12, 16]) == (255, 0, 0, 255) and tuple(shown[0, 0]) == (255, 255, 255, 255)
    view.undo()  # the view's Ctrl+Z undoes the document's edit
    assert doc.canvas.layers == ()
    qtbot.waitUntil(lambda: view.is_current() and view.layer_list.count() == 0, timeout=10_000)
    assert tuple(view.shown_pixels[12, 16]) == (255, 255, 255, 255)
    view.shutdown()


def test_the_dreams_view_shows_the_documents_dreams_and_sends_snapshots_to_its_canvas(app, qtbot):
    from studio.ui.dreams import DreamsView

    doc = Session()
    view = DreamsView(doc, history=20)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    dreams = doc.dream(_tiny_rbm(), {"title": "tiny"}, n_chains=4, seed=1)  # headless
    assert view.session is dreams and view.worker_alive
    qtbot.waitUntil(lambda: view.shown_frame is not None, timeout=10_000)
    rgba, prov = view.snapshot_grid()  # the person's action: onto the document's canvas
    (layer,) = doc.canvas.layers
    assert np.array_equal(np.asarray(layer.source), rgba) and layer.provenance["frame"] == prov["frame"]
    assert doc.dreams_shown == view.shown_frame.serial  # the canvas's "Snapshot of the Dreams" takes it
    view.clear()
    assert doc.dreams is None and view.session is None and not view.worker_alive
    view.shutdown()


def test_the_tabs_follow_the_current_run_the_training_dock_chooses(app, qtbot):
    """The training panel sets the document's current run; the Dreams and Latent tabs follow
    the document (a stopped run: free dreams over its model; a VAE: its latent space)."""
    import torch

    from models.factory import Options, build
    from studio.ui.dreams import DreamsView
    from studio.ui.latent_view import LatentView
    from studio.ui.training_panel import TrainingPanel
    from studio.ui.workers import JobsController
    from studio.jobs import TrainingJob

    doc = Session()
    controller = JobsController(doc)
    panel = TrainingPanel(doc, controller)
    dreams, latent = DreamsView(doc, history=20), LatentView(doc, max_sliders=2)
    for w in (panel, dreams, latent):
        qtbot.addWidget(w)
    dreams.follow_jobs(controller)
    latent.follow_jobs(controller)
    dreams.show()
    qtbot.waitExposed(dreams)

    rbm_job = TrainingJob(model=_tiny_rbm(), kind="rbm", title="Binary RBM")
    rbm_job._state = rbm_job._state.DONE
    doc.add_job(rbm_job)
    panel.set_current_kind("rbm")
    panel.page("rbm").add_job(rbm_job)  # the person opens a run in the dock
    assert doc.current_job is rbm_job
    qtbot.waitUntil(lambda: dreams.session is not None and dreams.session.meta.get("job_id") == rbm_job.id,
                    timeout=10_000)
    assert dreams.session is doc.dreams and dreams.session.model is not rbm_job.model  # a private copy
    assert latent.explorer is None  # an RBM has no latent space

    data = torch.rand(8, 1, 28, 28)
    vae = build(Options(kind="vae", image_shape=(1, 28, 28), latent=3, epochs=1, batch_size=8, seed=0,
                        frame_every=0, extra={"width": 4}), data, device="cpu").model
    vae_job = TrainingJob(model=vae, kind="vae", title="VAE")
    doc.add_job(vae_job)
    panel.set_current_kind("vae")
    panel.page("vae").add_job(vae_job)
    assert doc.current_job is vae_job
    qtbot.waitUntil(lambda: latent.explorer is not None, timeout=10_000)
    assert latent.explorer is doc.latent and latent.explorer.latent_dim == 3
    assert latent.meta["job_id"] == vae_job.id and len(latent.sliders) == 2
    panel.set_current_kind("rbm")  # back to the RBM's page: its run is current again
    assert doc.current_job is rbm_job
    for w in (dreams, latent):
        w.shutdown()
