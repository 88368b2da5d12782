"""The training panel: one page per model kind, in the order and with the titles of
``models.kinds.KINDS``.

Each :class:`TrainingPage` has the kind's hyperparameters (a form built from
:func:`studio.jobs.hyperparameters`), Start / Pause / Resume / Stop, a progress bar with the
time left, the runs of that kind, live curves and a mosaic (the RBM's weight filters, or the
newest frame for kinds without image-shaped weights). Under the progress, the run's
:class:`QualityCard` (see :mod:`studio.quality_card`): "scoring…" while the ended run is scored
in the background, then MMD² between its floor and noise, diversity, memorisation, the
log-likelihood of binary RBMs and warnings in plain words. Pages send intent to the
:class:`~studio.ui.workers.JobsController` and show the plain-data updates it relays; redraws of
the curves are throttled (at most ten a second), whatever the update rate.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QStyle,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible
from superqt.utils import qthrottled

from models import kinds
from studio.jobs import HyperParam, JobState, JobUpdate, Session, TrainingJob, format_duration, hyperparameters
from studio.quality_card import TOOLTIPS, Card, card_for
from studio.ui.plots import CurvesWidget, MosaicView, pretty
from studio.ui.workers import JobsController

STATE_TEXT = {
    "idle": "Ready",
    "running": "Training",
    "paused": "Paused",
    "stopped": "Stopped",
    "done": "Finished",
    "failed": "Failed",
}
STATE_COLOR = {"running": "#81c784", "paused": "#ffb74d", "failed": "#e57373", "done": "#4fc3f7"}
MUTED = "#8a9099"
WARN = "#ffb74d"  # warnings on the quality card: amber, readable on the dark theme


def _editor(p: HyperParam) -> QWidget:
    if p.type == "bool":
        w = QCheckBox()
    elif p.type == "choice":
        w = QComboBox()
        w.addItems(list(p.choices))
    elif p.type == "int":
        w = QSpinBox()
        w.setRange(int(p.minimum), int(min(p.maximum, 2**31 - 1)))
        w.setSingleStep(max(1, int(p.step)))
        w.setAccelerated(True)
    else:
        w = QDoubleSpinBox()
        w.setDecimals(p.decimals or 4)
        w.setRange(p.minimum, p.maximum)
        w.setSingleStep(p.step)
        w.setAccelerated(True)
    if p.special is not None and isinstance(w, (QSpinBox, QDoubleSpinBox)):
        w.setSpecialValueText(p.special)
    w.setToolTip(p.tooltip)
    w.setObjectName(f"param_{p.key}")
    return w



def _texture_filters_title(job: TrainingJob) -> str:
    """The filters' title for a texture RBM: what a filter is there (one small patch, shared by
    every position of the texture, not one hidden unit's view of the whole image) and, once its
    photos are loaded, what was done to them (at their own grain: ``studio.jobs.texture``)."""
    from html import escape

    cfg = getattr(job.model, "config", None)
    size = f"{cfg.filter_size}×{cfg.filter_size} px " if cfg is not None else ""
    title = (f"<b>Texture filters</b> <span style='color:#8a9099'>(one tile per filter: a {size}patch the model "
             "looks for, and paints, at every position of the texture; grey = 0)</span>")
    note = getattr(job, "texture_note", "")
    return title + (f"<br><span style='color:#8a9099'>Trained on {escape(note)}</span>" if note else "")

class ParamsForm(QWidget):
    """A form for a list of :class:`HyperParam`; ``values()`` / ``set_values()``."""

    def __init__(self, params: list[HyperParam], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.params = params
        self.editors: dict[str, QWidget] = {}
        form = QFormLayout(self)
        form.setContentsMargins(4, 2, 4, 2)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for p in params:
            w = _editor(p)
            self.editors[p.key] = w
            label = QLabel(p.label)
            label.setToolTip(p.tooltip)
            form.addRow(label, w)
        self.reset()

    def reset(self) -> None:
        self.set_values({p.key: p.default for p in self.params})

    def set_values(self, values: dict[str, Any]) -> None:
        for p in self.params:
            if p.key not in values:
                continue
            w, v = self.editors[p.key], values[p.key]
            try:
                if isinstance(w, QCheckBox):
                    w.setChecked(bool(p.coerce(v)))
                elif isinstance(w, QComboBox):
                    w.setCurrentText(str(p.coerce(v)))
                elif isinstance(w, QSpinBox):
                    w.setValue(int(p.minimum if v is None else v))
                elif isinstance(w, QDoubleSpinBox):
                    w.setValue(float(p.minimum if v is None else v))
            except (TypeError, ValueError):
                continue  # a stale value from old settings: keep the default

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p in self.params:
            w = self.editors[p.key]
            if isinstance(w, QCheckBox):
                out[p.key] = w.isChecked()
            elif isinstance(w, QComboBox):
                out[p.key] = w.currentText()
            else:
                out[p.key] = w.value()
        return out


class MMDBar(QWidget):
    """A small horizontal scale: the floor (training images against held-out ones) at the left,
    noise at the right, log-spaced, and a dot for the model (amber when it is no better than
    noise)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.positions: tuple[float, float, float] | None = None
        self.labels = ("floor", "noise")
        self.warn = False
        self.setToolTip(TOOLTIPS["bar"])
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(self._height())

    def _height(self) -> int:
        return self.fontMetrics().height() + 18

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(240, self._height())

    def set_scale(self, positions: tuple[float, float, float] | None, floor_text: str, noise_text: str,
                  warn: bool = False) -> None:
        self.positions, self.labels, self.warn = positions, (floor_text, noise_text), warn
        self.update()

    def model_x(self) -> float | None:
        """The dot's centre in widget pixels (None without a scale)."""
        if self.positions is None:
            return None
        return self._x(self.positions[1])

    def _x(self, t: float) -> float:
        pad = 8.0
        return pad + t * (self.width() - 2 * pad)

    def paintEvent(self, event) -> None:  # noqa: N802
        if self.positions is None:
            return
        floor, model, ceiling = self.positions
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        y = 8.0
        x0, x1 = self._x(0.0), self._x(1.0)
        p.setPen(QPen(QColor("#3a3f46"), 4, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
        p.drawLine(QPointF(x0, y), QPointF(x1, y))
        p.setPen(QPen(QColor("#4d545d"), 4, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
        p.drawLine(QPointF(self._x(floor), y), QPointF(self._x(ceiling), y))
        for t, colour in ((floor, "#81c784"), (ceiling, "#e57373")):
            p.setPen(QPen(QColor(colour), 2))
            p.drawLine(QPointF(self._x(t), y - 6), QPointF(self._x(t), y + 6))
        colour = QColor(WARN if self.warn else "#4fc3f7")
        p.setPen(QPen(QColor("#1b1d21"), 1.5))
        p.setBrush(colour)
        p.drawEllipse(QPointF(self._x(model), y), 5.5, 5.5)
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.9))
        p.setFont(font)
        p.setPen(QColor(MUTED))
        h = self.height() - y - 6
        left, right = self.labels
        p.drawText(QRectF(max(0.0, self._x(floor) - 40), y + 6, 200, h),
                   int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop), left)
        p.drawText(QRectF(min(self.width(), self._x(ceiling) + 40) - 200, y + 6, 200, h),
                   int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop), right)
        p.end()


class QualityCard(QFrame):
    """The run's quality card (see :mod:`studio.quality_card`); hidden when the run has none."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("QualityCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("#QualityCard { border: 1px solid #3a3f46; border-radius: 4px; }")
        self.card: Card | None = None
        self.headline = QLabel()
        self.headline.setTextFormat(Qt.TextFormat.RichText)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet(f"color: {MUTED};")
        self.bar = MMDBar()
        self.grid = QGridLayout()
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setHorizontalSpacing(10)
        self.grid.setVerticalSpacing(2)
        self.grid.setColumnStretch(1, 1)
        self.row_labels: dict[str, tuple[QLabel, QLabel]] = {}
        self.warnings = QLabel()
        self.warnings.setWordWrap(True)
        self.warnings.setTextFormat(Qt.TextFormat.RichText)
        self.warnings.setObjectName("QualityWarnings")
        self.warnings.setStyleSheet(f"color: {WARN};")
        self.caveat = QLabel()
        self.caveat.setWordWrap(True)
        self.caveat.setStyleSheet(f"color: {MUTED};")
        for label in (self.note, self.warnings, self.caveat):
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.setSpacing(4)
        lay.addWidget(self.headline)
        lay.addWidget(self.note)
        lay.addWidget(self.bar)
        lay.addLayout(self.grid)
        lay.addWidget(self.warnings)
        lay.addWidget(self.caveat)
        self.show_card(Card("hidden"))

    def show_card(self, c: Card) -> None:
        if c == self.card:
            return  # nothing changed: no relayout
        self.card = c
        self.setVisible(c.visible)
        colour = WARN if c.flags else "#c8ccd2"
        self.headline.setText(f"<b style='color:{colour}'>{c.headline}</b>")
        self.note.setText(c.note)
        self.note.setVisible(bool(c.note))
        if c.bar is not None:
            self.bar.set_scale(c.bar, *c.bar_labels, warn="noise" in c.flags)
        self.bar.setVisible(c.bar is not None)
        for pair in self.row_labels.values():
            for w in pair:
                self.grid.removeWidget(w)
                w.hide()
                w.deleteLater()
        self.row_labels.clear()
        for i, r in enumerate(c.rows):
            name, value = QLabel(r.label), QLabel(r.value)
            name.setStyleSheet(f"color: {MUTED};")
            value.setStyleSheet(f"color: {WARN};" if r.warn else "")
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setWordWrap(True)
            for w in (name, value):
                w.setToolTip(r.tooltip)
            self.grid.addWidget(name, i, 0, Qt.AlignmentFlag.AlignTop)
            self.grid.addWidget(value, i, 1)
            self.row_labels[r.key] = (name, value)
        self.warnings.setText("<br>".join(f"⚠ {w}" for w in c.warnings))
        self.warnings.setVisible(bool(c.warnings))
        self.caveat.setText(c.caveat)
        self.caveat.setVisible(bool(c.caveat))

    def value_text(self, key: str) -> str:
        """The value shown in row ``key`` ("" without that row)."""
        pair = self.row_labels.get(key)
        return pair[1].text() if pair is not None else ""

    def warnings_text(self) -> str:
        """The warnings shown ("" when there are none)."""
        return self.warnings.text() if not self.warnings.isHidden() else ""


class TrainingPage(QWidget):
    """Everything about training one model kind."""

    job_changed = Signal(object)  # the page's current job (TrainingJob | None)

    def __init__(self, kind: str, title: str, session: Session, controller: JobsController,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.kind, self.title = kind, title
        self.session, self.controller = session, controller
        self.job: TrainingJob | None = None
        self.jobs: list[TrainingJob] = []
        style = self.style()

        self.form = ParamsForm(hyperparameters(kind))
        self.settings_box = QCollapsible("Settings", collapsedIcon="▶")
        self.settings_box.addWidget(self.form)
        self.settings_box.expand(animate=False)
        self.defaults_button = QPushButton("Defaults")
        self.defaults_button.setToolTip("Put every setting of this model back to its default")
        self.defaults_button.clicked.connect(self.form.reset)

        def button(pix, text, tip, slot):
            b = QPushButton(style.standardIcon(pix), text)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            return b

        self.start_button = button(QStyle.StandardPixmap.SP_MediaPlay, "Start",
                                   "Train a new model with these settings (Space)", self.start)
        self.pause_button = button(QStyle.StandardPixmap.SP_MediaPause, "Pause",
                                   "Pause training; nothing is lost (Space)", self.pause)
        self.resume_button = button(QStyle.StandardPixmap.SP_MediaSeekForward, "Resume",
                                    "Continue training where it paused or stopped (Space)", self.resume)
        self.stop_button = button(QStyle.StandardPixmap.SP_MediaStop, "Stop",
                                  "Stop training; the model so far is kept and can be saved (Ctrl+.)", self.stop)
        row = QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.resume_button, self.stop_button):
            b.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            row.addWidget(b)

        self.runs = QComboBox()
        self.runs.setToolTip("Runs of this model kind in this session: switch to look at (or save) an earlier one")
        self.runs.currentIndexChanged.connect(self._run_chosen)
        runs_row = QHBoxLayout()
        runs_row.addWidget(QLabel("Run"))
        runs_row.addWidget(self.runs, 1)
        runs_row.addWidget(self.defaults_button)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("Not started")
        self.progress.setToolTip("Progress over all steps, and the time left at the current pace")
        self.status = QLabel("Press Start (or Space) to train.")
        self.status.setWordWrap(False)  # one line each: state, then metrics (full values in the tooltip)
        self.status.setMinimumWidth(10)
        self.status.setTextFormat(Qt.TextFormat.RichText)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Two lines, always: a label that changes height would resize (and repaint) the plots.
        self.status.setFixedHeight(self.status.fontMetrics().lineSpacing() * 2 + 4)
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #e57373;")
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.hide()
        self.quality_card = QualityCard()

        self.curves = CurvesWidget()
        self.mosaic_title = QLabel()
        self.mosaic = MosaicView()
        self._set_mosaic_mode(kinds.kind(kind).filters)
        mosaic_box = QWidget()
        mosaic_box.setMinimumHeight(170)
        mb = QVBoxLayout(mosaic_box)
        mb.setContentsMargins(0, 0, 0, 0)
        mb.addWidget(self.mosaic_title)
        mb.addWidget(self.mosaic, 1)

        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(self.settings_box)
        tl.addLayout(runs_row)
        tl.addLayout(row)
        tl.addWidget(self.progress)
        tl.addWidget(self.status)
        tl.addWidget(self.error_label)
        tl.addWidget(self.quality_card)

        # The controls take what they need; curves and mosaic share the rest (a splitter).
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.curves)
        self.splitter.addWidget(mosaic_box)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setSizes([1000, 1000])  # half and half, whatever the size hints say
        # The page scrolls when the dock is shorter than the controls and the plots' least
        # heights: the plots are never squeezed to their axes (nor is the window made taller).
        body = QWidget()
        body_lay = QVBoxLayout(body)
        body_lay.setContentsMargins(0, 0, 0, 0)
        body_lay.addWidget(top, 0)
        body_lay.addWidget(self.splitter, 1)
        self.scroll = QScrollArea()
        self.scroll.setWidget(body)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.scroll, 1)
        self._last_update: JobUpdate | None = None
        self._pending_mosaic = None
        self._refresh_buttons()

    # ----------------------------------------------------------------- intent
    def start(self) -> None:
        """Train a fresh model with the form's settings (the earlier run stays in Runs)."""
        if self.job is not None and self.job.state.active:
            return
        try:
            job = self.session.new_job(self.kind, self.form.values())
        except ValueError as exc:
            self._show_error(str(exc))
            return
        self.add_job(job)
        self.controller.start(job)

    def pause(self) -> None:
        if self.job is not None:
            self.controller.pause(self.job)

    def resume(self) -> None:
        if self.job is not None and self.job.can_resume:
            self.error_label.hide()
            self.controller.resume(self.job)

    def stop(self) -> None:
        if self.job is not None:
            self.controller.stop(self.job)

    def toggle(self) -> None:
        """Space: pause a running job, resume a paused one, otherwise start a new one."""
        job = self.job
        if job is not None and job.state is JobState.RUNNING:
            self.pause()
        elif job is not None and job.state is JobState.PAUSED:
            self.resume()
        else:
            self.start()

    def values(self) -> dict[str, Any]:
        return self.form.values()

    def set_values(self, values: dict[str, Any]) -> None:
        self.form.set_values(values)

    # ----------------------------------------------------------------- jobs
    def add_job(self, job: TrainingJob) -> None:
        """Make ``job`` this page's current run (a new job or an opened model)."""
        self.jobs.append(job)
        self.runs.blockSignals(True)
        self.runs.addItem(self._run_label(job), job.id)
        self.runs.setCurrentIndex(self.runs.count() - 1)
        self.runs.blockSignals(False)
        self._show_job(job)

    def _run_label(self, job: TrainingJob) -> str:
        where = job.path.name if job.path is not None else f"on {job.source}" if job.source else ""
        return f"#{job.id} · {STATE_TEXT.get(job.state.value, job.state.value).lower()} · step {job.step} {where}".strip()

    def _run_chosen(self, index: int) -> None:
        if 0 <= index < len(self.jobs):
            self._show_job(self.jobs[index])

    def _show_job(self, job: TrainingJob) -> None:
        self.job = job
        self.error_label.setVisible(bool(job.error))
        self.error_label.setText(job.error or "")
        self.curves.clear_curves()
        self.mosaic.set_image(None)
        self._last_update = None
        self._pending_mosaic = None
        update = job.update(frame=True, filters=not job.state.active)
        self.on_update(update, force=True)
        self.job_changed.emit(job)

    # ----------------------------------------------------------------- updates from the worker
    def on_update(self, update: JobUpdate, force: bool = False) -> None:
        """A plain-data update of this page's job. Text, curves and pictures are redrawn at their
        own paces (5, 4 and 10 a second at most), so the event loop never does all at once;
        a change of state is shown at once."""
        if self.job is None or update.job_id != self.job.id:
            return
        previous = self._last_update
        self._last_update = update
        if update.filters is not None:
            self._set_mosaic_mode(True)
            self._pending_mosaic = update.filters
        elif update.frame is not None and not self._filters_mode:
            self._pending_mosaic = update.frame
        if previous is not None and previous.state != update.state:
            self._fold_settings(update.state)
        if force or previous is None or previous.state != update.state or update.state != "running":
            self._refresh_now()
            self._show_mosaic_now()
            self._redraw_curves_now(now=force)  # a run shown afresh: all plots; else one per turn
        else:
            self._refresh_throttled()
            self._show_mosaic()
            self._redraw_curves()

    def _fold_settings(self, state: str) -> None:
        """While a model trains its settings are locked: fold them away to give the curves and
        the filters the room. They stay folded when the run ends (a click on "Settings" unfolds
        them): unfolding by itself took the room of the curves just when they are looked at."""
        if state == "running" and self.settings_box.isExpanded():
            self.settings_box.collapse(animate=False)

    def _refresh_now(self) -> None:
        u = self._last_update
        if u is None or self.job is None or u.job_id != self.job.id:
            return
        self._show_progress(u)
        if u.error and u.state == "failed":
            self.error_label.setText(u.error)
            self.error_label.show()
        # From the job itself, not the update: a worker's last update may predate the scoring.
        self.quality_card.show_card(card_for(self.job.quality_info(), current_step=self.job.step))
        idx = self.runs.findData(u.job_id)
        if idx >= 0:
            label = self._run_label(self.job)
            if self.runs.itemText(idx) != label:
                self.runs.setItemText(idx, label)
        self._refresh_buttons()

    @qthrottled(timeout=200)
    def _refresh_throttled(self) -> None:
        self._refresh_now()

    def _show_mosaic_now(self) -> None:
        mosaic, self._pending_mosaic = self._pending_mosaic, None
        if mosaic is not None:
            self.mosaic.set_image(mosaic)

    @qthrottled(timeout=100)
    def _show_mosaic(self) -> None:
        self._show_mosaic_now()

    def _set_mosaic_mode(self, filters: bool) -> None:
        self._filters_mode = filters
        texture = filters and self.job is not None and self.job.kind == "texture"
        if texture:
            self.mosaic_title.setWordWrap(True)  # two lines: the page must not widen past its dock
            self.mosaic_title.setText(_texture_filters_title(self.job))
            self.mosaic.set_placeholder("The texture RBM's filters appear here while it trains.")
        elif filters:
            self.mosaic_title.setText("<b>Weight filters</b> <span style='color:#8a9099'>(one tile per hidden unit, "
                                      "up to 100; grey = 0)</span>")
            self.mosaic.set_placeholder("The RBM's weight filters appear here while it trains.")
        else:
            self.mosaic_title.setText("<b>Latest frame</b>")
            self.mosaic.set_placeholder("What the model makes of the images appears here while it trains.")

    def _show_progress(self, u: JobUpdate) -> None:
        total = max(1, u.total_steps)
        self.progress.setValue(int(1000 * min(1.0, u.step / total)) if u.total_steps else 0)
        pct = 100.0 * u.step / total if u.total_steps else 0.0
        steps = f" · step {u.step:,}/{u.total_steps:,}" if u.total_steps else ""
        if u.state == "running":
            left = f" · {format_duration(u.eta)} left" if u.step else " · starting…"
            self.progress.setFormat(f"{pct:.0f}%{steps}{left}")
        elif u.state == "idle":
            self.progress.setFormat("Starting…")
        elif not u.total_steps:  # an opened checkpoint whose run's length is unknown: no made-up 0 %
            self.progress.setFormat(f"step {u.step:,} · {STATE_TEXT.get(u.state, u.state).lower()}")
        else:
            self.progress.setFormat(f"{pct:.0f}%{steps} · {STATE_TEXT.get(u.state, u.state).lower()}")
        color = STATE_COLOR.get(u.state, "#c8ccd2")
        parts = [f"<b style='color:{color}'>{STATE_TEXT.get(u.state, u.state)}</b>"]
        if u.total_epochs:
            parts.append(f"epoch {min(u.epoch + (u.state == 'running'), u.total_epochs)}/{u.total_epochs}")
        if u.steps_per_second > 0:
            parts.append(f"{u.steps_per_second:,.0f} steps/s")
        metrics = u.epoch_metrics or u.metrics
        shown = [f"{pretty(k)} {v:.4g}" for k, v in metrics.items() if k not in ("lr", "phase")][:3]
        if "phase" in u.metrics:
            parts.append(f"phase {int(u.metrics['phase'])}")
        text = " · ".join(parts)
        if shown:
            text += "<br><span style='color:#8a9099'>" + " · ".join(shown) + "</span>"
        self.status.setText(text)
        self.status.setToolTip(" · ".join(f"{pretty(k)} {v:.6g}" for k, v in metrics.items()))

    @qthrottled(timeout=250)
    def _redraw_curves(self) -> None:
        self._redraw_curves_now(now=False)

    def _redraw_curves_now(self, now: bool = True) -> None:
        if self.job is not None:
            u = self._last_update
            self.curves.set_series(self.job.series("step"), self.job.series("epoch"),
                                   total_steps=u.total_steps if u is not None else 0, now=now)

    def _refresh_buttons(self) -> None:
        state = self.job.state if self.job is not None else None
        active = state is not None and state.active
        self.start_button.setEnabled(not active)
        self.pause_button.setEnabled(state is JobState.RUNNING)
        self.resume_button.setEnabled(self.job is not None and self.job.can_resume)
        self.stop_button.setEnabled(active or state is JobState.IDLE)
        self.form.setEnabled(not active)

    def _show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.show()


class TrainingPanel(QWidget):
    """A combo of model kinds over a stack of :class:`TrainingPage` s."""

    current_changed = Signal(str)  # kind

    def __init__(self, session: Session, controller: JobsController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session, self.controller = session, controller
        self.kind_box = QComboBox()
        self.kind_box.setToolTip("Model kind (Ctrl+PgUp / Ctrl+PgDown)")
        self.stack = QStackedWidget()
        self.pages: dict[str, TrainingPage] = {}
        for kind, record in kinds.KINDS.items():
            page = TrainingPage(kind, record.title, session, controller)
            self.pages[kind] = page
            self.stack.addWidget(page)
            self.kind_box.addItem(record.title, kind)
        self.kind_box.currentIndexChanged.connect(self._kind_chosen)
        head = QHBoxLayout()
        head.addWidget(QLabel("Model"))
        head.addWidget(self.kind_box, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addLayout(head)
        lay.addWidget(self.stack, 1)
        controller.updated.connect(self._route)
        # The visible page's run is the document's current run: the tabs follow it.
        for page in self.pages.values():
            page.job_changed.connect(lambda job, p=page: p is self.current_page and session.set_current_job(job))
        self.current_changed.connect(lambda _kind: session.set_current_job(self.current_page.job))

    def _route(self, update: JobUpdate) -> None:
        page = self.pages.get(update.kind)
        if page is not None:
            page.on_update(update)
        self._mark_running()

    def _mark_running(self) -> None:
        for i in range(self.kind_box.count()):
            kind = self.kind_box.itemData(i)
            page = self.pages[kind]
            busy = page.job is not None and page.job.state.active
            title = page.title + ("  ●" if busy else "")
            if self.kind_box.itemText(i) != title:
                self.kind_box.setItemText(i, title)

    def _kind_chosen(self, index: int) -> None:
        kind = self.kind_box.itemData(index)
        if kind in self.pages:
            self.stack.setCurrentWidget(self.pages[kind])
            self.current_changed.emit(kind)

    @property
    def current_kind(self) -> str:
        return self.kind_box.currentData()

    @property
    def current_page(self) -> TrainingPage:
        return self.pages[self.current_kind]

    def page(self, kind: str) -> TrainingPage:
        return self.pages[kind]

    def set_current_kind(self, kind: str) -> bool:
        idx = self.kind_box.findData(kind)
        if idx < 0:
            return False
        self.kind_box.setCurrentIndex(idx)
        return True

    def step_kind(self, delta: int) -> None:
        n = self.kind_box.count()
        if n:
            self.kind_box.setCurrentIndex((self.kind_box.currentIndex() + delta) % n)
