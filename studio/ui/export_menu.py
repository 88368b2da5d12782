"""File → Export: every export of the studio in one menu, and the export scale.

The tabs keep their own export buttons; this menu is where a person looks first (the Canvas
toolbar can hide its Export button behind "»" in a narrow window). Each entry runs the tab's
own export dialog, enabled when that tab has something to export; Scale (×1, ×2, ×4, ×8,
smooth or not) is the size grids, chains, strips and animations are written at, kept in the
user's settings (:class:`studio.ui.settings.ExportPrefs`)."""
from __future__ import annotations

from typing import Any, Callable

from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QMenu

from studio.images import EXPORT_SCALES
from studio.ui.settings import export_prefs

#: (label, the window's view attribute, the view's dialog method, shortcut shown) per entry;
#: None: a separator. The shortcuts belong to the tabs (Ctrl+E exports what the current tab
#: shows), so one the two tabs share names its tab.
ENTRIES: tuple[tuple[str, str, str, str] | None, ...] = (
    ("Canvas Layers + Composite (PNG)…", "canvas_view", "export_layers_dialog", "Ctrl+Shift+E"),
    ("Canvas Composite (PNG)…", "canvas_view", "export_composite_dialog", "Ctrl+E in Canvas"),
    ("Canvas as OpenRaster (.ora)…", "canvas_view", "export_ora_dialog", "Ctrl+Alt+E"),
    ("Canvas as Photoshop (.psd)…", "canvas_view", "export_psd_dialog", "Ctrl+Alt+Shift+E"),
    ("Canvas Animation (GIF / APNG)…", "canvas_view", "export_animation_dialog", ""),
    None,
    ("Dreams Grid (PNG)…", "dreams", "export_grid_dialog", "Ctrl+E in Dreams"),
    ("Dreams Chain Animation (GIF / APNG)…", "dreams", "export_chain_dialog", ""),
    None,
    ("Latent Strip (PNG)…", "latent_view", "export_strip_png", ""),
    ("Latent Animation (GIF / APNG)…", "latent_view", "export_animation", ""),
)


def _has_content(view: Any, method: str) -> bool:
    """Whether the view has something for that export now (a cheap look, no work)."""
    if method.startswith("export_chain") or method.startswith("export_grid"):
        session = getattr(view, "session", None)
        return session is not None and session.latest() is not None
    if method in ("export_strip_png", "export_animation") and hasattr(view, "strip_frames"):
        return view.strip_frames is not None
    canvas = getattr(view, "canvas", None)
    if canvas is not None:
        if method == "export_animation_dialog":
            return any(layer.frames for layer in canvas.layers)
        return bool(canvas.layers)
    return True


class ExportMenu:
    """Fills ``menu`` (the window's File → Export) and keeps its entries' enabled state and the
    Scale choice current each time it opens."""

    def __init__(self, window: Any, menu: QMenu) -> None:
        self.window = window
        self.menu = menu
        self.entries: dict[str, QAction] = {}
        for entry in ENTRIES:
            if entry is None:
                menu.addSeparator()
                continue
            label, attr, method, keys = entry
            action = menu.addAction(label + (f"\t{keys}" if keys else ""))
            action.setObjectName(f"export:{attr}.{method}")
            action.triggered.connect(self._runner(attr, method))
            self.entries[label] = action
        menu.addSeparator()
        self.scale_menu = menu.addMenu("&Scale (grids, chains, strips, animations)")
        self.scale_group = QActionGroup(self.scale_menu)
        self.scale_actions: dict[int, QAction] = {}
        for factor in EXPORT_SCALES:
            action = self.scale_menu.addAction(f"×{factor}")
            action.setCheckable(True)
            action.setData(factor)
            action.triggered.connect(lambda _=False, f=factor: self.set_scale(f))
            self.scale_group.addAction(action)
            self.scale_actions[factor] = action
        self.scale_menu.addSeparator()
        self.smooth_action = self.scale_menu.addAction("Smooth (Lanczos; off: crisp pixels)")
        self.smooth_action.setCheckable(True)
        self.smooth_action.toggled.connect(self.set_smooth)
        menu.aboutToShow.connect(self.refresh)
        self.refresh()

    def _runner(self, attr: str, method: str) -> Callable[[], None]:
        def run() -> None:
            view = getattr(self.window, attr, None)
            if view is None:
                self.window.statusBar().showMessage("The model engine is still starting: try again in a moment.", 5000)
                return
            getattr(view, method)()
        return run

    def refresh(self) -> None:
        """Enable each entry whose tab has something to export; show the current scale."""
        for entry in ENTRIES:
            if entry is None:
                continue
            label, attr, method, _ = entry
            view = getattr(self.window, attr, None)
            self.entries[label].setEnabled(view is not None and _has_content(view, method))
        factor, smooth = export_prefs().scale()
        self.scale_actions[factor].setChecked(True)
        self.smooth_action.blockSignals(True)
        self.smooth_action.setChecked(smooth)
        self.smooth_action.blockSignals(False)

    def set_scale(self, factor: int) -> None:
        export_prefs().set_scale(factor)
        self.window.statusBar().showMessage(f"Grids, chains, strips and animations export at ×{factor}", 4000)

    def set_smooth(self, on: bool) -> None:
        factor, _ = export_prefs().scale()
        export_prefs().set_scale(factor, on)
