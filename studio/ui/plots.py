"""Live plots (pyqtgraph): metric curves and image mosaics (weight filters, frames).

Both widgets take plain numpy data and do as little as possible per redraw: curves keep their
PlotDataItems and only ``setData`` (with clip-to-view and peak downsampling), mosaics keep one
``ImageItem`` with *fixed levels*, so the picture does not flicker as values drift.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QFontMetricsF
from PySide6.QtWidgets import QApplication, QLabel, QStackedLayout, QVBoxLayout, QWidget

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False, background="#1b1d21", foreground="#c8ccd2")

#: Colours of successive metrics (colour-blind-safe-ish, readable on the dark background).
PALETTE = ["#4fc3f7", "#ffb74d", "#81c784", "#e57373", "#ba68c8", "#fff176", "#90a4ae"]
#: Metrics that are bookkeeping, not worth a curve.
HIDDEN_METRICS = {"lr", "phase", "beta"}

PRETTY = {
    "recon_error": "reconstruction error",
    "free_energy": "free energy",
    "pseudo_likelihood": "pseudo-likelihood",
    "free_energy_gap": "free-energy gap",
    "loss": "loss",
    "kl": "KL",
    "elbo": "ELBO",
}


def shown_metric(name: str) -> bool:
    """Whether ``name`` gets a curve: not bookkeeping (``lr``, nor the hybrid's ``rbm_lr``)."""
    return name not in HIDDEN_METRICS and name.removeprefix("rbm_") not in HIDDEN_METRICS


def pretty(name: str) -> str:
    """``rbm_recon_error`` → ``RBM reconstruction error``."""
    prefix = ""
    if name.startswith("rbm_"):
        prefix, name = "RBM ", name[4:]
    return prefix + PRETTY.get(name, name.replace("_", " "))


class ReadableAxis(pg.AxisItem):
    """An axis whose tick labels never overlap, however small the plot.

    pyqtgraph always labels its major ticks (at least two of them), so on a plot a few dozen
    pixels high the labels of the y axis sit on one another. Here a level of ticks whose labels
    would not fit between its ticks (with a gap) is dropped, and a major level that is too dense
    keeps only every 2nd, 5th, 10th, ... tick, so the labels left stay round numbers."""

    GAP_PX = 4.0  # free pixels between two neighbouring labels
    START_TEXT_PX = 30  # pyqtgraph's first width for the labels of a vertical axis

    def _label_extent(self, values: list[float], spacing: float) -> float:
        """Pixels a label takes along the axis: its height on a vertical axis (as pyqtgraph draws
        it, 0.8 of the font's), the widest label's width on a horizontal one."""
        font = self.style["tickFont"] or QApplication.font()
        fm = QFontMetricsF(font)
        if self.orientation in ("left", "right"):
            return fm.height() * 0.8
        strings = self.tickStrings(values, self.autoSIPrefixScale * self.scale, spacing)
        return max((fm.horizontalAdvance(s) for s in strings), default=0.0)

    def tickValues(self, minVal: float, maxVal: float, size: float):  # noqa: N802 (pyqtgraph's name)
        levels = super().tickValues(minVal, maxVal, size)
        span = abs(maxVal - minVal)
        if not levels or size <= 0 or span == 0 or self.logMode:
            return levels
        px_per_unit = size / span
        kept = []
        for spacing, values in levels:
            values = list(values)
            if not values or spacing <= 0:
                continue
            need = self._label_extent(values, spacing) + self.GAP_PX
            if spacing * px_per_unit >= need:
                kept.append((spacing, values))
                continue
            if kept:  # a finer level too dense for its labels: leave it out
                break
            for k in (2, 5, 10, 20, 50, 100, 200, 500, 1000):  # the major level: thin it
                if k * spacing * px_per_unit >= need:
                    break
            thinned = [v for v in values if round(v / spacing) % k == 0] or values[:1]
            kept.append((k * spacing, thinned))
            break
        return kept


class CurvesWidget(pg.GraphicsLayoutWidget):
    """One small plot per metric (two columns), steps on the x axis, linked.

    Step metrics are thin lines; epoch metrics of the same name are drawn over them as a thick
    line (with dots while there are few). Building a PlotItem costs ~10 ms, so a few are built
    ahead, one per event-loop turn while idle, and plots are reused from run to run. Updates are
    spread over event-loop turns, one plot per turn (see :meth:`set_series`).
    """

    POOL = 4
    TICK_MS = 40  # one plot per tick: four plots are all fresh within 160 ms
    MAX_POINTS = 600  # per curve: more would not show at this size, and costs paint time
    #: The least height of a row of plots: title (~20 px), x axis (20 px) and about 70 px of
    #: data, room for three labelled y ticks. The widget asks for as many rows as it shows, so
    #: its parent scrolls instead of squeezing the plots to their axes.
    ROW_MIN_PX = 110
    MIN_PX = 160

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(self.MIN_PX)
        self.ci.setSpacing(4)
        self._plots: dict[str, pg.PlotItem] = {}
        self._spare: list[pg.PlotItem] = []
        self._data: dict[str, tuple] = {}
        self._order: list[str] = []
        self._dirty: deque[str] = deque()
        self._ticker = QTimer(self)
        self._ticker.setInterval(self.TICK_MS)
        self._ticker.timeout.connect(self._tick)
        self.setToolTip("Training curves: thin lines per step, thick per epoch. "
                        "Drag to pan, wheel to zoom, right-click for options.")
        QTimer.singleShot(0, self._warm)

    def _warm(self) -> None:
        if len(self._spare) + len(self._plots) < self.POOL:
            self._spare.append(self._new_plot())
            QTimer.singleShot(0, self._warm)

    @staticmethod
    def _new_plot() -> pg.PlotItem:
        plot = pg.PlotItem(axisItems={"left": ReadableAxis("left"), "bottom": ReadableAxis("bottom")})
        plot.showGrid(x=False, y=True, alpha=0.12)
        plot.setClipToView(True)
        plot.setDownsampling(auto=True, mode="peak")
        # The y axis is as wide as its labels (a label wider than a fixed axis is not drawn at
        # all: a free energy of -1689.5 left a plot with no y labels); it grows during a run but
        # never shrinks back, so the plot does not jitter as the labels change.
        plot.getAxis("left").setStyle(autoReduceTextSpace=False)
        plot.getAxis("bottom").setHeight(20)
        plot.hideButtons()
        # The two curves of a metric, made now (each costs a few ms), coloured when used.
        plot.step_item = plot.plot()
        plot.step_item.setAlpha(0.55, False)
        plot.epoch_item = plot.plot()
        return plot

    def clear_curves(self) -> None:
        """Forget the curves; keep the plots for the next run."""
        for plot in self._plots.values():
            plot.step_item.setData([], [])
            plot.epoch_item.setData([], [])
            left = plot.getAxis("left")
            left.textWidth = ReadableAxis.START_TEXT_PX  # the next run's labels set its width afresh
            left._updateWidth()
            self.ci.removeItem(plot)
            self._spare.append(plot)
        self._plots.clear()
        self._data.clear()
        self._order.clear()
        self._dirty.clear()
        self._ticker.stop()
        self._fit_height()

    def _fit_height(self) -> None:
        """Ask for room for every row of plots (see ``ROW_MIN_PX``)."""
        rows = (len(self._plots) + 1) // 2
        spacing = self.ci.layout.verticalSpacing() if rows else 0
        self.setMinimumHeight(max(self.MIN_PX, rows * self.ROW_MIN_PX + (rows - 1) * max(0, spacing) + 12))

    def _plot(self, name: str, color: str) -> pg.PlotItem:
        plot = self._plots.get(name)
        if plot is None:
            n = len(self._plots)
            plot = self._spare.pop() if self._spare else self._new_plot()
            plot.setTitle(pretty(name), size="9pt")
            plot.setXLink(next(iter(self._plots.values())) if self._plots else None)
            plot.enableAutoRange()
            plot.step_item.setPen(pg.mkPen(color, width=1))
            plot.epoch_item.setPen(pg.mkPen(color, width=2))
            plot.color = color
            self.ci.addItem(plot, row=n // 2, col=n % 2)
            self._plots[name] = plot
            self._fit_height()
        return plot

    def set_series(self, steps: dict[str, tuple[np.ndarray, np.ndarray]],
                   epochs: dict[str, tuple[np.ndarray, np.ndarray]], total_steps: int = 0,
                   now: bool = False) -> None:
        """Show the curves. With ``total_steps`` the x axis spans the whole run (the curves grow
        left to right) and the y axes move only when the data outgrow them: axes that do not
        change are not redrawn, which is most of the cost of a plot.

        The plots are brought up to date one per event-loop turn (every ``TICK_MS``), round
        robin, so no turn of the loop repaints them all; ``now`` updates every plot at once."""
        names = [k for k in steps if shown_metric(k)]
        names += [k for k in epochs if shown_metric(k) and k not in names]
        for name in names:
            self._data[name] = (steps.get(name), epochs.get(name), total_steps)
            if name not in self._order:
                self._order.append(name)
            if name not in self._dirty:
                self._dirty.append(name)
        if now:
            while self._dirty:
                self._apply(self._dirty.popleft())
        elif self._dirty and not self._ticker.isActive():
            self._ticker.start()

    def _tick(self) -> None:
        if self._dirty:
            self._apply(self._dirty.popleft())
        if not self._dirty:
            self._ticker.stop()

    def _apply(self, name: str) -> None:
        step_xy, epoch_xy, total_steps = self._data[name]
        plot = self._plot(name, PALETTE[self._order.index(name) % len(PALETTE)])
        if step_xy is not None:
            plot.step_item.setData(*decimate(*step_xy, self.MAX_POINTS))
        if epoch_xy is not None:
            x, y = decimate(*epoch_xy, self.MAX_POINTS)
            if len(x) <= 40:
                plot.epoch_item.setData(x, y, symbol="o", symbolSize=4, symbolBrush=plot.color, symbolPen=None)
            else:
                plot.epoch_item.setData(x, y, symbol=None)
        self._fit(plot, step_xy, epoch_xy, total_steps)

    def _fit(self, plot: pg.PlotItem, step_xy, epoch_xy, total_steps: int) -> None:
        if total_steps <= 0:
            plot.enableAutoRange()
            return
        vb = plot.getViewBox()
        if vb.autoRangeEnabled()[0] or getattr(plot, "_x_total", None) != total_steps:
            plot._x_total = total_steps
            plot.disableAutoRange()
            plot.setXRange(0, total_steps, padding=0.02)
        ys = [xy[1] for xy in (step_xy, epoch_xy) if xy is not None]
        y = np.concatenate(ys) if ys else np.empty(0)
        y = y[np.isfinite(y)]
        if not y.size:
            return
        lo, hi = float(y.min()), float(y.max())
        (cur_lo, cur_hi) = vb.viewRange()[1]
        span = max(hi - lo, abs(hi) * 1e-3, 1e-9)
        inside = cur_lo <= lo and hi <= cur_hi
        if not inside or span < 0.35 * (cur_hi - cur_lo):  # outgrown, or shrunk a lot: refit
            plot.setYRange(lo - 0.12 * span, hi + 0.12 * span, padding=0)

    @property
    def metric_names(self) -> list[str]:
        return list(self._plots)


def decimate(x: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """At most about ``n`` points: the mean of equal bins (non-finite values become gaps)."""
    y = np.where(np.isfinite(y), y, np.nan)
    if len(x) <= n:
        return x, y
    k = int(math.ceil(len(x) / n))
    m = (len(x) // k) * k
    xs = x[:m].reshape(-1, k)[:, -1]
    with np.errstate(all="ignore"):
        ys = np.nanmean(y[:m].reshape(-1, k), axis=1) if np.isnan(y[:m]).any() else y[:m].reshape(-1, k).mean(axis=1)
    if m < len(x):
        xs = np.append(xs, x[-1])
        ys = np.append(ys, y[-1])
    return xs, ys


class MosaicView(QWidget):
    """A mosaic of small images in a pannable, zoomable view with fixed levels: uint8 mosaics
    are drawn as they are (0..255, pyqtgraph's fast path), float ones over [0, 1].

    ``set_image(None)`` shows ``placeholder`` text instead.
    """

    def __init__(self, placeholder: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._stack = QStackedLayout()
        self.graphics = pg.GraphicsLayoutWidget()
        self.view = self.graphics.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.view.setDefaultPadding(0.01)
        # Shown smaller than its pixels, a mosaic is averaged down (no aliasing stripes).
        self.image = pg.ImageItem(levels=(0, 255), autoDownsample=True)
        self.image.setOpts(axisOrder="row-major")
        self.view.addItem(self.image)
        self.label = QLabel(placeholder)
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setWordWrap(True)
        self.label.setStyleSheet("color: #8a9099;")
        self._stack.addWidget(self.label)
        self._stack.addWidget(self.graphics)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._stack)
        self._shape: tuple[int, ...] | None = None
        self.has_image = False

    def set_placeholder(self, text: str) -> None:
        self.label.setText(text)

    def set_image(self, mosaic: np.ndarray | None) -> None:
        if mosaic is None:
            self._stack.setCurrentWidget(self.label)
            self.has_image = False
            self._shape = None
            return
        levels = (0, 255) if mosaic.dtype == np.uint8 else (0.0, 1.0)
        self.image.setImage(mosaic, autoLevels=False, levels=levels)
        if not self.has_image:
            self._stack.setCurrentWidget(self.graphics)
            self.has_image = True
        if mosaic.shape != self._shape:  # refit when the layout of the mosaic changes
            self._shape = mosaic.shape
            # Auto-range keeps the mosaic fitted as the widget resizes, until the user zooms.
            self.view.enableAutoRange(enable=True)

