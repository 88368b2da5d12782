"""The Dreams tab's controls: chains, steps, temperature, pause, brush, scrubbing, zoom,
clicks on the mosaic and brush strokes, the overlay."""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QRectF, Qt

from studio.dreams import BrushUnavailable
from studio.images import mosaic
from studio.ui.dreams.widgets import BRUSH_OUTLINE_RGBA, BRUSH_RGBA, MAX_ZOOM, MIN_ZOOM, PAD


class DreamsControls:
    """The part of :class:`~studio.ui.dreams.view.DreamsView` that answers its controls and the mosaic."""

    # -------------------------------------------------------------------- control slots
    def _on_chains(self, n: int) -> None:
        if self.session is not None and self.session.source == "sampler":
            self.session.set_n_chains(n)
            self.go_live()

    def _on_steps(self, k: int) -> None:
        if self.session is not None and self.session.source == "sampler":
            self.session.set_steps_per_frame(k)

    def _on_temperature(self, t: float) -> None:
        if self.session is not None and self.session.source == "sampler":
            self.session.set_temperature(max(0.01, float(t)))

    def _on_show(self, _checked: bool) -> None:
        if self.session is not None and self.session.source == "sampler":
            self.session.set_show(self._show_kind())

    def _on_pause_toggled(self, paused: bool) -> None:
        self.pause_button.setText("Resume" if paused else "Pause")
        s = self.session
        if s is not None and s.source == "training":
            self._display_frozen = paused
            if paused and self._shown is not None:
                self._pinned = self._shown.serial
            elif not paused:
                self._pinned = None
            return
        self._user_paused = paused
        self._sync_running()
        self._message("Paused" if paused else "Dreaming")

    def _on_brush_toggled(self, on: bool) -> None:
        if on and self.session is not None and not self.session.can_brush:
            self.brush_button.setChecked(False)
            self._message(self.session.brush_refusal or "")
            return
        self.graphics.setCursor(Qt.CursorShape.CrossCursor if on else Qt.CursorShape.ArrowCursor)
        if on:
            self._message("Brush: left-drag paints the pixels that keep dreaming, right-drag erases")

    def _on_scrub(self, value: int) -> None:
        rng = self.session.serial_range() if self.session is not None else None
        if rng is None:
            return
        first, last = rng
        serial = first + value
        if serial >= last and not self._display_frozen:
            self._pinned = None
        else:
            self._pinned = min(serial, last)

    def _on_zoom(self, z: float) -> None:
        self._auto_fit = False  # the user chose a zoom: keep it
        if self.image.image is None:
            return
        vb = self.viewbox
        w, h = max(1.0, vb.width()), max(1.0, vb.height())
        cx, cy = vb.viewRect().center().x(), vb.viewRect().center().y()
        vb.setRange(xRange=(cx - w / z / 2, cx + w / z / 2), yRange=(cy - h / z / 2, cy + h / z / 2), padding=0)

    def _on_manual_zoom(self, *_: Any) -> None:
        self._sync_zoom_slider()

    def _sync_zoom_slider(self) -> None:
        span = self.viewbox.viewRect().width()
        if span > 0:
            z = self.viewbox.width() / span
            self.zoom_slider.blockSignals(True)
            self.zoom_slider.setValue(round(min(MAX_ZOOM, max(MIN_ZOOM, z)), 2))
            self.zoom_slider.blockSignals(False)

    # ----------------------------------------------------------------------- mouse
    def _mosaic_click(self, y: float, x: float, right: bool) -> None:
        if self._layout is None:
            return
        hit = self._layout.chain_at(y, x)
        if hit is None:
            return
        chain, ty, tx = hit
        self._select(chain)
        if self.brush_active:
            self._paint(chain, ty, tx, ty, tx, erase=right)

    def _brush_stroke(self, y: float, x: float, ly: float, lx: float, start: bool, erase: bool) -> None:
        lay = self._layout
        if lay is None:
            return
        if start:
            hit = lay.chain_at(ly, lx) or lay.chain_at(y, x)
            self._stroke_chain = hit[0] if hit else None
            if hit:
                self._select(hit[0])
        chain = self._stroke_chain
        if chain is None:
            return
        oy, ox = lay.origin(chain)
        self._paint(chain, y - oy, x - ox, ly - oy, lx - ox, erase)

    def _paint(self, chain: int, y: float, x: float, y0: float, x0: float, erase: bool) -> None:
        s = self.session
        if s is None:
            return
        if self._pinned is not None:
            self.go_live()
        try:
            s.paint(chain, y, x, float(self.brush_size.value()), erase=erase, y0=y0, x0=x0)
        except (BrushUnavailable, IndexError) as e:
            self._message(str(e))
            return
        self._refresh_overlay()

    def _select(self, chain: int) -> None:
        self.selected_chain = int(chain)
        self.chain_label.setText(f"Selected chain: {chain}")
        self._place_selection()

    def _place_selection(self) -> None:
        lay = self._layout
        if lay is None or self.selected_chain >= lay.n:
            self.selection.setVisible(False)
            return
        y, x = lay.origin(self.selected_chain)
        self.selection.setRect(QRectF(x - 0.5, y - 0.5, lay.width + 1.0, lay.height + 1.0))
        self.selection.setVisible(True)

    def _refresh_overlay(self) -> None:
        s, lay = self.session, self._layout
        if s is None or lay is None:
            return
        self._mask_version = s.mask_version
        mask = s.mask
        if mask is None or not mask.any() or mask.shape != (lay.n, lay.height, lay.width):
            self.overlay.clear()
            return
        m = mosaic(mask[..., None].astype(np.uint8), PAD, fill=0)[..., 0].astype(bool)
        rgba = np.zeros((*m.shape, 4), np.uint8)
        rgba[m] = BRUSH_RGBA
        rgba[_ring(m)] = BRUSH_OUTLINE_RGBA
        self.overlay.setImage(rgba, autoLevels=False, levels=(0, 255))


def _ring(m: np.ndarray) -> np.ndarray:
    """The pixels just outside the region ``m`` (4-neighbours): where its outline is drawn, so
    the outline covers none of the painted pixels."""
    grown = m.copy()
    grown[1:] |= m[:-1]
    grown[:-1] |= m[1:]
    grown[:, 1:] |= m[:, :-1]
    grown[:, :-1] |= m[:, 1:]
    return grown & ~m
