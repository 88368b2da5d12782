"""Building the Dreams tab's widgets: the mosaic, the controls column, the scrubber, shortcuts."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QKeySequence, QPen, QShortcut
from PySide6.QtWidgets import (
    QButtonGroup,
    QFrame,
    QGraphicsRectItem,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QSplitter,
    QStackedLayout,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider, QLabeledSlider

from studio.dreams import MAX_CHAINS
from studio.ui.dreams.widgets import _group, _MosaicImage, MAX_ZOOM, MIN_ZOOM, MUTED, SELECT_COLOUR
from studio.ui.widgets import pixel_view


class DreamsBuilder:
    """The part of :class:`~studio.ui.dreams.view.DreamsView` that builds its widgets."""

    # ============================================================================= layout
    def _build(self) -> None:
        self.caption = QLabel(f"<span style='color:{MUTED}'>No model yet.</span>")
        self.caption.setTextFormat(Qt.TextFormat.RichText)
        self.caption.setWordWrap(True)

        # --- the picture -------------------------------------------------------------
        self.graphics, self.viewbox = pixel_view()
        self.viewbox.setDefaultPadding(0.01)
        self.image = _MosaicImage(self)
        self.viewbox.addItem(self.image)
        self.overlay = pg.ImageItem(axisOrder="row-major", autoDownsample=False)
        self.overlay.setZValue(5)
        self.overlay.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.viewbox.addItem(self.overlay)
        self.selection = QGraphicsRectItem()
        pen = QPen(QColor(SELECT_COLOUR))
        pen.setCosmetic(True)
        pen.setWidthF(1.5)
        self.selection.setPen(pen)
        self.selection.setZValue(10)
        self.selection.setVisible(False)
        self.viewbox.addItem(self.selection)
        self.viewbox.sigRangeChangedManually.connect(self._on_manual_zoom)
        self.graphics.setToolTip("Click a chain to select it. Wheel zooms, drag pans. "
                                 "With the brush on (B): left-drag paints the pixels that keep dreaming, right-drag erases.")
        self.placeholder = QLabel("Open a trained model to watch it dream, or start training:\n"
                                  "its chains appear here, live.")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setStyleSheet(f"color: {MUTED}; font-size: 13pt;")
        self._stack = QStackedLayout()
        self._stack.addWidget(self.placeholder)
        self._stack.addWidget(self.graphics)

        # --- the scrubber -------------------------------------------------------------
        self.scrub = QSlider(Qt.Orientation.Horizontal)
        self.scrub.setRange(0, 0)
        self.scrub.setToolTip("History: drag back over the last frames of the chains. "
                              "The right end is live.")
        self.scrub.valueChanged.connect(self._on_scrub)
        self.live_button = QToolButton()
        self.live_button.setText("Live")
        self.live_button.setToolTip("Jump back to the newest frame")
        self.live_button.clicked.connect(self.go_live)
        self.scrub_label = QLabel("live")
        self.scrub_label.setMinimumWidth(110)
        self.scrub_label.setStyleSheet(f"color: {MUTED};")
        self.controls_button = QToolButton()
        self.controls_button.setText("Controls")
        self.controls_button.setCheckable(True)
        self.controls_button.setChecked(True)
        self.controls_button.setToolTip("Show or hide the controls beside the dreams (C)")
        self.controls_button.toggled.connect(self.show_controls)
        scrub_row = QHBoxLayout()
        scrub_row.addWidget(QLabel("History"))
        scrub_row.addWidget(self.scrub, 1)
        scrub_row.addWidget(self.live_button)
        scrub_row.addWidget(self.scrub_label)
        scrub_row.addWidget(self.controls_button)

        # One line: the state of the dreams, or for a few seconds the last message.
        self.status = QLabel("")
        self.status.setStyleSheet(f"color: {MUTED};")
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._message_text = ""
        self._message_time = -1e9

        # --- the quality banner: collapsed dreams, copies of training images ------------------
        self.quality_banner = QFrame()
        self.quality_banner.setObjectName("QualityBanner")
        self.quality_banner.setStyleSheet(
            "#QualityBanner { background: #3d3320; border: 1px solid #ffb74d; border-radius: 4px; }")
        self.quality_label = QLabel()
        self.quality_label.setWordWrap(True)
        self.quality_label.setStyleSheet("color: #ffd8a0;")
        self.quality_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.quality_close = QToolButton()
        self.quality_close.setText("✕")
        self.quality_close.setAutoRaise(True)
        self.quality_close.setToolTip("Hide this warning for this model")
        self.quality_close.clicked.connect(self.dismiss_quality_banner)
        banner = QHBoxLayout(self.quality_banner)
        banner.setContentsMargins(8, 4, 4, 4)
        warn = QLabel("⚠")
        warn.setStyleSheet("color: #ffb74d; font-size: 14pt;")
        banner.addWidget(warn, 0, Qt.AlignmentFlag.AlignTop)
        banner.addWidget(self.quality_label, 1)
        banner.addWidget(self.quality_close, 0, Qt.AlignmentFlag.AlignTop)
        self.quality_banner.hide()

        left = QVBoxLayout()
        left.setContentsMargins(0, 0, 0, 0)
        left.addWidget(self.caption)
        left.addWidget(self.quality_banner)
        left.addLayout(self._stack, 1)
        left.addLayout(scrub_row)
        left.addWidget(self.status)

        # --- controls -----------------------------------------------------------------
        panel = QWidget()
        side = QVBoxLayout(panel)
        side.setContentsMargins(4, 0, 4, 0)
        side.setSpacing(8)

        box, form = _group("Chains")
        self.chains_spin = QSpinBox()
        self.chains_spin.setRange(16, MAX_CHAINS)
        self.chains_spin.setSingleStep(16)
        self.chains_spin.setValue(64)
        self.chains_spin.setKeyboardTracking(False)
        self.chains_spin.setToolTip("How many chains dream side by side (16-256). "
                                    "Chains you keep keep their state; new ones start from noise.")
        self.chains_spin.valueChanged.connect(self._on_chains)
        form.addRow("Chains", self.chains_spin)
        self.steps_slider = QLabeledSlider(Qt.Orientation.Horizontal)
        self.steps_slider.setRange(1, 200)
        self.steps_slider.setValue(1)
        self.steps_slider.setToolTip("Gibbs steps between two frames: more steps, faster dreams.")
        self.steps_slider.valueChanged.connect(self._on_steps)
        form.addRow("Steps/frame", self.steps_slider)
        self.temp_slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.temp_slider.setRange(0.2, 4.0)
        self.temp_slider.setSingleStep(0.05)
        self.temp_slider.setDecimals(2)
        self.temp_slider.setValue(1.0)
        self.temp_slider.setToolTip("Temperature: below 1 the dreams settle on the strongest patterns, "
                                    "above 1 they grow noisy and wander.")
        self.temp_slider.valueChanged.connect(self._on_temperature)
        form.addRow("Temperature", self.temp_slider)
        show_row = QHBoxLayout()
        self.probs_radio = QRadioButton("Probabilities")
        self.probs_radio.setToolTip("Show E[v | h]: the chains' smooth probabilities")
        self.samples_radio = QRadioButton("Samples")
        self.samples_radio.setToolTip("Show the sampled visible states (binary for a binary RBM)")
        self.probs_radio.setChecked(True)
        self._show_group = QButtonGroup(self)
        self._show_group.addButton(self.probs_radio)
        self._show_group.addButton(self.samples_radio)
        self.probs_radio.toggled.connect(self._on_show)
        show_row.addWidget(self.probs_radio)
        show_row.addWidget(self.samples_radio)
        form.addRow("Show", show_row)
        reset_row = QHBoxLayout()
        self.reset_noise_button = QPushButton("Reset: noise")
        self.reset_noise_button.setToolTip("Restart every chain from noise (R)")
        self.reset_noise_button.clicked.connect(self.reset_from_noise)
        self.reset_data_button = QPushButton("Reset: dataset")
        self.reset_data_button.setToolTip("Restart the chains at random images of the dataset")
        self.reset_data_button.clicked.connect(self.reset_from_dataset)
        reset_row.addWidget(self.reset_noise_button)
        reset_row.addWidget(self.reset_data_button)
        form.addRow(reset_row)
        run_row = QHBoxLayout()
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip("Pause or resume the dreams (P)")
        self.pause_button.toggled.connect(self._on_pause_toggled)
        self.step_button = QPushButton("Step")
        self.step_button.setToolTip("One frame: 'steps/frame' Gibbs steps, then pause (S)")
        self.step_button.clicked.connect(self.single_step)
        run_row.addWidget(self.pause_button)
        run_row.addWidget(self.step_button)
        form.addRow(run_row)
        side.addWidget(box)

        box, form = _group("View")
        zoom_row = QHBoxLayout()
        # Fractional: a fitted grid of large tiles is drawn below 1 screen pixel per image
        # pixel, and the label says so (it said 1 while 64 px tiles were drawn at half size).
        self.zoom_slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.zoom_slider.setRange(MIN_ZOOM, MAX_ZOOM)
        self.zoom_slider.setDecimals(2)
        self.zoom_slider.setValue(4)
        self.zoom_slider.setToolTip("Zoom: screen pixels per image pixel (the wheel zooms too)")
        self.zoom_slider.valueChanged.connect(self._on_zoom)
        self.fit_button = QToolButton()
        self.fit_button.setText("Fit")
        self.fit_button.setToolTip("Fit the whole grid in the view (F)")
        self.fit_button.clicked.connect(self.fit)
        zoom_row.addWidget(self.zoom_slider, 1)
        zoom_row.addWidget(self.fit_button)
        form.addRow("Zoom", zoom_row)
        side.addWidget(box)

        box, form = _group("Dream brush")
        self.brush_button = QPushButton("Brush")
        self.brush_button.setCheckable(True)
        self.brush_button.setToolTip("Paint on a chain: painted pixels keep dreaming, the rest of that "
                                     "chain stays as it is (inpainting). Right-drag erases. (B)")
        self.brush_button.toggled.connect(self._on_brush_toggled)
        self.brush_size = QLabeledSlider(Qt.Orientation.Horizontal)
        self.brush_size.setRange(1, 16)
        self.brush_size.setValue(3)
        self.brush_size.setToolTip("Brush radius in image pixels")
        form.addRow(self.brush_button)
        form.addRow("Size", self.brush_size)
        mask_row = QHBoxLayout()
        self.clear_mask_button = QPushButton("Clear")
        self.clear_mask_button.setToolTip("Erase all paint: every chain dreams freely again")
        self.clear_mask_button.clicked.connect(self.clear_mask)
        self.invert_mask_button = QPushButton("Invert")
        self.invert_mask_button.setToolTip("Swap painted and unpainted pixels of the painted chains")
        self.invert_mask_button.clicked.connect(self.invert_mask)
        mask_row.addWidget(self.clear_mask_button)
        mask_row.addWidget(self.invert_mask_button)
        form.addRow(mask_row)
        self.brush_hint = QLabel("")
        self.brush_hint.setWordWrap(True)
        self.brush_hint.setStyleSheet(f"color: {MUTED};")
        form.addRow(self.brush_hint)
        side.addWidget(box)

        box, form = _group("Snapshot && export")
        self.chain_label = QLabel("Selected chain: 0")
        self.chain_label.setToolTip("Click a chain in the grid to select it")
        form.addRow(self.chain_label)
        snap_row = QGridLayout()
        self.snap_grid_button = QPushButton("Grid → canvas")
        self.snap_grid_button.setToolTip("Snapshot the shown grid as a new canvas layer")
        self.snap_grid_button.clicked.connect(self.snapshot_grid)
        self.snap_chain_button = QPushButton("Chain → canvas")
        self.snap_chain_button.setToolTip("Snapshot the selected chain as a new canvas layer")
        self.snap_chain_button.clicked.connect(self.snapshot_chain)
        self.export_grid_button = QPushButton("Grid PNG…")
        self.export_grid_button.setToolTip("Export the shown grid as a PNG with its provenance (Ctrl+E)")
        self.export_grid_button.clicked.connect(self.export_grid_dialog)
        self.export_chain_button = QPushButton("Chain GIF/APNG…")
        self.export_chain_button.setToolTip("Export the selected chain's evolution over the history "
                                            "as an animated GIF or APNG")
        self.export_chain_button.clicked.connect(self.export_chain_dialog)
        snap_row.addWidget(self.snap_grid_button, 0, 0)
        snap_row.addWidget(self.snap_chain_button, 0, 1)
        snap_row.addWidget(self.export_grid_button, 1, 0)
        snap_row.addWidget(self.export_chain_button, 1, 1)
        form.addRow(snap_row)
        self.fps_spin = QSpinBox()
        self.fps_spin.setRange(1, 60)
        self.fps_spin.setValue(12)
        self.fps_spin.setSuffix(" fps")
        self.fps_spin.setToolTip("Frames per second of exported animations")
        form.addRow("Animation", self.fps_spin)
        side.addWidget(box)
        side.addStretch(1)

        scroll = QScrollArea()
        scroll.setWidget(panel)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(240)
        scroll.setMaximumWidth(420)
        self.controls = scroll

        # Toggles read as toggles on the dark theme.
        for b in (self.pause_button, self.brush_button):
            b.setStyleSheet("QPushButton:checked { background: #2f7fb5; color: white; border: 1px solid #4fc3f7; "
                            "border-radius: 3px; padding: 3px; }")

        # The dreams and the controls share a splitter: drag it, or hide the controls (C) to
        # give the grid the whole width between the window's docks.
        dreams = QWidget()
        dreams.setLayout(left)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(dreams)
        self.splitter.addWidget(scroll)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 0)
        self.splitter.setCollapsible(0, False)
        self.splitter.setSizes([900, 280])
        self.splitter.splitterMoved.connect(self._refit)
        root = QHBoxLayout(self)
        root.setContentsMargins(6, 6, 6, 6)
        root.addWidget(self.splitter)

        for keys, slot, what in (("P", self.toggle_pause, "Pause / resume the dreams"),  # Space: the window's training
                                 ("S", self.single_step, "One step of every chain"),
                                 ("R", self.reset_from_noise, "Reset the chains from noise"),
                                 ("Ctrl+E", self.export_grid_dialog, "Export the grid as PNG"),
                                 ("B", self.brush_button.toggle, "Dream brush on / off"),
                                 ("F", self.fit, "Fit the grid to the view"),
                                 ("C", self.controls_button.toggle, "Show / hide the controls")):
            sc = QShortcut(QKeySequence(keys), self)
            sc.setWhatsThis(what)  # listed by F1 (MainWindow._show_shortcuts)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            sc.activated.connect(slot)
