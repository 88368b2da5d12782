"""The dataset panel's latent actions (studio/ui/dataset_panel.py): with an explorer over the set,
"Find similar" lists the image itself first, "Sort by outlierness" puts the planted noise image at
the top (and "Original order" goes back), "Denoise" gives the explorer's denoised image, and the
denoise dialog sends it to the canvas; the actions stay disabled without an explorer."""
from __future__ import annotations

import numpy as np
import pytest

from studio.dataset import ImageSet, Preprocess
from studio.latent import LatentExplorer
from studio.ui.dataset_panel import DatasetPanel
from test_latent import NOISE, data, hybrid, vae  # noqa: F401  (fixtures: the set with planted noise, tiny models)


@pytest.fixture()
def panel(qtbot, data):
    p = DatasetPanel()
    qtbot.addWidget(p)
    p.resize(400, 600)
    images = data.numpy()
    p.show_images(ImageSet(images=images, paths=[f"img{i}.png" for i in range(len(images))], rejected=[],
                           preprocess=Preprocess(size=28)))
    return p


@pytest.fixture(scope="module")
def explorer(vae, data):
    return LatentExplorer(vae, data)


def select(panel, rows):
    from PySide6.QtCore import QItemSelectionModel

    sm = panel.grid.selectionModel()
    sm.clearSelection()
    for r in rows:
        sm.select(panel.thumbnails.index(r, 0), QItemSelectionModel.SelectionFlag.Select)


def test_the_actions_need_an_explorer_over_this_set(panel, explorer):
    select(panel, [3])
    panel.context_menu()
    assert not any(a.isEnabled() for a in panel.latent_actions)
    panel.set_explorer(explorer)
    panel.context_menu()
    assert panel.find_similar_action.isEnabled() and panel.sort_outliers_action.isEnabled()
    assert panel.denoise_action.isEnabled() and not panel.original_order_action.isEnabled()
    assert not panel.sort_free_energy_action.isEnabled()  # a VAE has no RBM over its codes
    assert "hybrid" in panel.sort_free_energy_action.statusTip()
    other = LatentExplorer(explorer.model, explorer.images[:10])  # encoded another set
    panel.set_explorer(other)
    assert not panel.find_similar_action.isEnabled() and not panel.sort_outliers_action.isEnabled()


def test_find_similar_puts_the_image_itself_first(qtbot, panel, explorer):
    panel.set_explorer(explorer)
    select(panel, [12])
    panel.find_similar_action.trigger()
    qtbot.waitUntil(lambda: bool(panel.similar) and panel.latent_busy == 0, timeout=10_000)
    assert panel.similar[0] == (12, 0.0)
    assert [i for i, _ in panel.similar] == [i for i, _ in explorer.nearest(12, k=len(panel.similar))]
    assert panel.similar_list.count() == len(panel.similar)
    assert panel.similar_list.item(0).data(256) == 12  # Qt.UserRole
    assert panel.selected_set_indices() == sorted(i for i, _ in panel.similar)


def test_sort_by_outlierness_puts_the_planted_noise_on_top_and_goes_back(qtbot, panel, explorer):
    panel.set_explorer(explorer)
    select(panel, [5])
    panel.sort_outliers_action.trigger()
    qtbot.waitUntil(lambda: panel.thumbnails.order is not None, timeout=10_000)
    order = explorer.outlier_order()
    assert panel.thumbnails.order == order
    assert order.index(NOISE) < 3
    shown = [panel.thumbnails.index(r, 0).data(256) for r in range(3)]  # the paths the top rows show
    assert f"img{NOISE}.png" in shown
    assert panel.thumbnails.index(0, 0).data(256) == f"img{order[0]}.png"
    # the selection follows its images, and the main window reads set indices, not rows
    assert panel.selected_set_indices() == [5]
    select(panel, [0])
    assert panel.selected_set_indices() == [order[0]]
    assert panel.original_order_action.isEnabled()
    panel.original_order_action.trigger()
    assert panel.thumbnails.order is None and panel.selected_set_indices() == [order[0]]
    assert panel.thumbnails.index(NOISE, 0).data(256) == f"img{NOISE}.png"


def test_denoise_gives_the_explorers_denoised_image_and_the_dialog_sends_it_on(qtbot, panel, explorer, data):
    from studio.ui.latent_view import DenoiseDialog

    panel.set_explorer(explorer)
    select(panel, [7])
    with qtbot.waitSignal(panel.denoised, timeout=10_000) as sig:
        panel.denoise_action.trigger()
    index, original, denoised = sig.args
    assert index == 7 and np.array_equal(original, data[7].numpy().transpose(1, 2, 0))
    assert np.array_equal(denoised, explorer.denoise(data[7]))
    dialog = DenoiseDialog(original, denoised, {"source": "denoised", "image_index": 7})
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.toCanvas, timeout=2000) as sent:
        dialog.canvas_button.click()
    rgba, prov = sent.args
    assert rgba.shape == (28, 28, 4) and np.array_equal(rgba[..., 0], denoised[..., 0])
    assert prov["image_index"] == 7


def test_sort_by_free_energy_follows_the_hybrids_rbm(qtbot, panel, hybrid, data):
    ex = LatentExplorer(hybrid, data)
    panel.set_explorer(ex)
    menu = panel.context_menu()
    assert panel.sort_free_energy_action in menu.actions() and panel.sort_free_energy_action.isEnabled()
    messages = []
    panel.status_message.connect(messages.append)
    panel.sort_free_energy_action.trigger()
    qtbot.waitUntil(lambda: panel.thumbnails.order is not None, timeout=10_000)
    order = panel.thumbnails.order
    assert order == ex.outlier_order("free_energy") and order != ex.outlier_order("recon")
    fe = ex.free_energies()
    top = [int(panel.thumbnails.index(r, 0).data(256)[3:-4]) for r in range(5)]  # "img12.png" -> 12
    assert top == order[:5] and all(fe[top[i]] >= fe[top[i + 1]] for i in range(4))
    assert any("Least likely codes first" in m for m in messages)
