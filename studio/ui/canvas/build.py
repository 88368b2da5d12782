"""Building the Canvas tab's widgets and actions (toolbar, layer list, properties)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QAction, QColor, QKeySequence, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFrame,
    QGraphicsRectItem,
    QGraphicsScene,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMenu,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QStyle,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.canvas.blend import BLEND_MODES
from studio.canvas import MAX_SCALED_SIDE, RESAMPLE_MODES, Levels
from studio.ui.canvas.widgets import (
    _group,
    _shortcut_text,
    _spin,
    BLEND_TITLES,
    CanvasGraphicsView,
    ColourButton,
    CompositeItem,
    GRADIENT_PRESETS,
    PALETTE_PRESETS,
    RESAMPLE_TITLES,
    THUMB,
    TILING_TITLES,
)


class ViewBuilder:
    """The part of :class:`~studio.ui.canvas.view.CanvasView` that builds its widgets and actions."""

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        self.scene = QGraphicsScene(self)
        self.item = CompositeItem()
        self.scene.addItem(self.item)
        self.outline = QGraphicsRectItem()
        pen = QPen(QColor("#4fc3f7"))
        pen.setCosmetic(True)
        pen.setWidth(1)
        pen.setStyle(Qt.PenStyle.DashLine)
        self.outline.setPen(pen)
        self.outline.setZValue(10)
        self.outline.hide()
        self.scene.addItem(self.outline)
        self.view = CanvasGraphicsView(self.scene)
        self.view.zoom_changed.connect(lambda _z: self._update_info())
        self.view.move_started.connect(self._move_started)
        self.view.moved.connect(self._move_by)
        self.view.move_finished.connect(self._move_finished)

        self.toolbar = QToolBar("Canvas")
        self.toolbar.setIconSize(QSize(16, 16))
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)

        self.info = QLabel()
        self.info.setStyleSheet("color: #8a9099; padding: 2px 6px;")
        self.info.setToolTip("Canvas size, layers, the last render time, zoom")

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.setSpacing(0)
        ll.addWidget(self.toolbar)
        ll.addWidget(self.view, 1)
        ll.addWidget(self.info)

        # layer list ---------------------------------------------------------
        self.layer_list = QListWidget()
        self.layer_list.setIconSize(QSize(THUMB, THUMB))
        self.layer_list.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.layer_list.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.layer_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.layer_list.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                        | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.layer_list.setToolTip("Layers, top first. Tick to show or hide, drag to reorder, double-click to rename")
        self.layer_list.setMinimumHeight(120)
        self.layer_list.currentItemChanged.connect(self._current_item_changed)
        self.layer_list.itemChanged.connect(self._item_changed)
        self.layer_list.model().rowsMoved.connect(lambda *_: QTimer.singleShot(0, self._list_reordered))

        self.layer_buttons = QHBoxLayout()
        self.layer_buttons.setSpacing(2)

        layers_box = QGroupBox("Layers")
        lb = QVBoxLayout(layers_box)
        lb.setContentsMargins(6, 6, 6, 6)
        lb.addWidget(self.layer_list, 1)
        lb.addLayout(self.layer_buttons)

        # properties -----------------------------------------------------------
        props = QWidget()
        pl = QVBoxLayout(props)
        pl.setContentsMargins(0, 0, 0, 0)

        box, form = _group("Blending")
        self.name_edit = QLineEdit()
        self.name_edit.setToolTip("The layer's name (also its file name in exports)")
        self.name_edit.editingFinished.connect(lambda: self._edit(name=self.name_edit.text().strip() or "Layer"))
        self.blend_box = QComboBox()
        for mode in BLEND_MODES:
            self.blend_box.addItem(BLEND_TITLES[mode], mode)
        self.blend_box.setToolTip("How the layer mixes with the layers below (W3C Compositing and Blending)")
        self.blend_box.setMaxVisibleItems(12)
        self.blend_box.currentIndexChanged.connect(lambda _i: self._edit(blend_mode=self.blend_box.currentData()))
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setToolTip("Opacity of the layer")
        self.opacity_spin = QSpinBox()
        self.opacity_spin.setRange(0, 100)
        self.opacity_spin.setSuffix(" %")
        self.opacity_spin.setKeyboardTracking(False)
        self.opacity_spin.setToolTip("Opacity of the layer")
        self._gesture(self.opacity_slider)
        self.opacity_slider.valueChanged.connect(self._opacity_slid)
        self.opacity_spin.valueChanged.connect(lambda v: self._edit(merge=True, opacity=v / 100))
        self.opacity_spin.editingFinished.connect(self.canvas.end_merge)
        row = QHBoxLayout()
        row.addWidget(self.opacity_slider, 1)
        row.addWidget(self.opacity_spin)
        form.addRow("Name", self.name_edit)
        form.addRow("Blend", self.blend_box)
        form.addRow("Opacity", row)
        pl.addWidget(box)

        box, form = _group("Placement")
        self.x_spin, self.y_spin = QSpinBox(), QSpinBox()
        for spin, name in ((self.x_spin, "x"), (self.y_spin, "y")):
            spin.setRange(-4 * MAX_SCALED_SIDE, 4 * MAX_SCALED_SIDE)
            spin.setSuffix(" px")
            spin.setKeyboardTracking(False)
            spin.setToolTip(f"{name.upper()} of the layer's top-left corner (or the tile origin) on the canvas; "
                            "drag on the canvas with the move tool (M)")
            spin.valueChanged.connect(lambda v, n=name: self._edit(merge=True, **{n: v}))
            spin.editingFinished.connect(self.canvas.end_merge)
        row = QHBoxLayout()
        row.addWidget(self.x_spin)
        row.addWidget(self.y_spin)
        self.scale_spin = _spin(0.01, 512.0, 0.25, 3, "Scale factor: a 32 px texture at ×32 fills a 1024 px canvas",
                                suffix=" ×")
        self.scale_spin.valueChanged.connect(lambda v: self._edit(merge=True, scale=v))
        self.scale_spin.editingFinished.connect(self.canvas.end_merge)
        self.fill_button = QToolButton()
        self.fill_button.setText("Fill")
        self.fill_button.setToolTip("Scale the layer to cover the whole canvas, at the top-left")
        self.fill_button.clicked.connect(self.fill_canvas)
        self.center_button = QToolButton()
        self.center_button.setText("Centre")
        self.center_button.setToolTip("Centre the layer on the canvas")
        self.center_button.clicked.connect(self.center_layer)
        srow = QHBoxLayout()
        srow.addWidget(self.scale_spin, 1)
        srow.addWidget(self.fill_button)
        srow.addWidget(self.center_button)
        self.resample_box = QComboBox()
        for mode in RESAMPLE_MODES:
            self.resample_box.addItem(RESAMPLE_TITLES[mode], mode)
        self.resample_box.setToolTip("Upsampling filter: nearest keeps pixels crisp, bicubic is smooth")
        self.resample_box.currentIndexChanged.connect(lambda _i: self._edit(resample=self.resample_box.currentData()))
        self.tiling_box = QComboBox()
        for mode, text in TILING_TITLES.items():
            self.tiling_box.addItem(text, mode)
        self.tiling_box.setToolTip("Repeat the layer over the whole canvas; mirrored tiles meet without seams")
        self.tiling_box.currentIndexChanged.connect(lambda _i: self._edit(tiling=self.tiling_box.currentData()))
        form.addRow("Position", row)
        form.addRow("Scale", srow)
        form.addRow("Resample", self.resample_box)
        form.addRow("Tiling", self.tiling_box)
        pl.addWidget(box)

        box, form = _group("Colour")
        self.colourise_box = QComboBox()
        for text, data in (("None", None), ("Gradient map", "gradient"), ("Palette", "palette")):
            self.colourise_box.addItem(text, data)
        self.colourise_box.setToolTip("Colourise by luminance: a gradient map, or a posterising palette")
        self.colourise_box.currentIndexChanged.connect(self._colourise_kind_changed)
        self.colour_stack = QStackedWidget()
        self.colour_stack.addWidget(QWidget())
        # gradient editor
        grad = QWidget()
        gl = QHBoxLayout(grad)
        gl.setContentsMargins(0, 0, 0, 0)
        self.gradient_buttons = [ColourButton("#000000", tip) for tip in
                                 ("Colour of the darkest tones", "Colour of the mid tones", "Colour of the lightest tones")]
        self.gradient_mid = QCheckBox("3 stops")
        self.gradient_mid.setToolTip("Add a middle stop (at 50 % luminance)")
        self.gradient_preset = QComboBox()
        self.gradient_preset.addItem("Preset…", None)
        for name in GRADIENT_PRESETS:
            self.gradient_preset.addItem(name, name)
        self.gradient_preset.setToolTip("Gradient presets")
        for b in self.gradient_buttons:
            b.colour_changed.connect(lambda _c: self._apply_colourise())
            gl.addWidget(b)
        self.gradient_mid.toggled.connect(self._gradient_mid_toggled)
        self.gradient_preset.activated.connect(self._gradient_preset_chosen)
        gl.addWidget(self.gradient_mid)
        gl.addWidget(self.gradient_preset, 1)
        self.colour_stack.addWidget(grad)
        # palette editor
        pal = QWidget()
        pg = QHBoxLayout(pal)
        pg.setContentsMargins(0, 0, 0, 0)
        self.palette_count = QSpinBox()
        self.palette_count.setRange(2, 8)
        self.palette_count.setValue(4)
        self.palette_count.setToolTip("Number of palette colours (luminance bands)")
        self.palette_count.valueChanged.connect(self._palette_count_changed)
        self.palette_buttons = [ColourButton("#000000", f"Palette colour {i + 1} (band {i + 1}, dark to light)")
                                for i in range(8)]
        self.palette_buttons_row = QHBoxLayout()
        self.palette_buttons_row.setSpacing(2)
        for b in self.palette_buttons:
            b.setFixedSize(20, 22)
            b.colour_changed.connect(lambda _c: self._apply_colourise())
            self.palette_buttons_row.addWidget(b)
        self.palette_preset = QComboBox()
        self.palette_preset.addItem("Preset…", None)
        for name in PALETTE_PRESETS:
            self.palette_preset.addItem(name, name)
        self.palette_preset.setToolTip("Palette presets")
        self.palette_preset.activated.connect(self._palette_preset_chosen)
        pv = QVBoxLayout()
        top = QHBoxLayout()
        top.addWidget(self.palette_count)
        top.addWidget(self.palette_preset, 1)
        pv.addLayout(top)
        pv.addLayout(self.palette_buttons_row)
        pg.addLayout(pv)
        self.colour_stack.addWidget(pal)
        self.colour_stack.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.invert_check = QCheckBox("Invert")
        self.invert_check.setToolTip("Invert the colours (after colourising)")
        self.invert_check.toggled.connect(lambda on: self._edit(invert=on))
        form.addRow("Colourise", self.colourise_box)
        form.addRow(self.colour_stack)
        form.addRow("", self.invert_check)
        pl.addWidget(box)

        box, form = _group("Levels")
        self.level_spins = {
            "in_black": _spin(0.0, 0.99, 0.01, 2, "Input black point: darker tones become black"),
            "in_white": _spin(0.01, 1.0, 0.01, 2, "Input white point: lighter tones become white"),
            "gamma": _spin(0.1, 10.0, 0.05, 2, "Midtones: above 1 brightens, below 1 darkens"),
            "out_black": _spin(0.0, 1.0, 0.01, 2, "Output black: the darkest the layer gets"),
            "out_white": _spin(0.0, 1.0, 0.01, 2, "Output white: the lightest the layer gets"),
        }
        for spin in self.level_spins.values():
            spin.valueChanged.connect(lambda _v: self._levels_changed())
            spin.editingFinished.connect(self.canvas.end_merge)
        r1, r2 = QHBoxLayout(), QHBoxLayout()
        for key in ("in_black", "gamma", "in_white"):
            r1.addWidget(self.level_spins[key])
        for key in ("out_black", "out_white"):
            r2.addWidget(self.level_spins[key])
        self.levels_reset = QToolButton()
        self.levels_reset.setText("Reset")
        self.levels_reset.setToolTip("Reset the levels")
        self.levels_reset.clicked.connect(lambda: self._edit(levels=Levels()))
        r2.addWidget(self.levels_reset)
        form.addRow("Input", r1)
        form.addRow("Output", r2)
        pl.addWidget(box)

        self.anim_box, form = _group("Animation")
        self.frame_spin = QSpinBox()
        self.frame_spin.setToolTip("The frame of the animated source shown on the canvas")
        self.frame_spin.valueChanged.connect(lambda v: self._edit(merge=True, frame_index=v))
        self.frames_label = QLabel()
        row = QHBoxLayout()
        row.addWidget(self.frame_spin)
        row.addWidget(self.frames_label, 1)
        form.addRow("Frame", row)
        pl.addWidget(self.anim_box)

        self.provenance_label = QLabel()
        self.provenance_label.setWordWrap(True)
        self.provenance_label.setStyleSheet("color: #8a9099; font-size: 11px; padding: 2px 4px;")
        self.provenance_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        pl.addWidget(self.provenance_label)
        pl.addStretch(1)

        self.props = props
        scroll = QScrollArea()
        scroll.setWidget(props)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.empty_label = QLabel("<p style='color:#8a9099'>Add a layer (the <b>Add</b> menu): a dream snapshot, a "
                                  "texture from a trained model, a dataset image or an image file.</p>")
        self.empty_label.setWordWrap(True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.props_stack = QStackedWidget()
        self.props_stack.addWidget(self.empty_label)
        self.props_stack.addWidget(scroll)

        side = QSplitter(Qt.Orientation.Vertical)
        side.addWidget(layers_box)
        side.addWidget(self.props_stack)
        side.setStretchFactor(0, 2)
        side.setStretchFactor(1, 5)
        side.setChildrenCollapsible(False)
        side.setMinimumWidth(330)
        side.setSizes([290, 520])
        self.side_splitter = side

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(side)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 0)
        split.setSizes([900, 350])
        split.setChildrenCollapsible(False)
        self.splitter = split
        root = QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        root.addWidget(split)

    def _gesture(self, slider: QSlider) -> None:
        """A slider drag is one undo step: close merging when it starts and ends."""
        slider.sliderPressed.connect(self.canvas.end_merge)
        slider.sliderReleased.connect(self.canvas.end_merge)

    def _menu_button(self, text: str, icon: QStyle.StandardPixmap, menu: QMenu, tip: str) -> QToolButton:
        """A toolbar button with text and icon that opens `menu` at once (Add, Export, Canvas)."""
        button = QToolButton()
        button.setText(text)
        button.setIcon(self.style().standardIcon(icon))
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        button.setMenu(menu)
        button.setToolTip(tip)
        return button

    def _act(self, text: str, slot: Callable[[], Any], shortcut: str | Sequence[str] | QKeySequence.StandardKey | None = None,
             tip: str = "", icon: QStyle.StandardPixmap | None = None) -> QAction:
        action = QAction(text, self)
        if icon is not None:
            action.setIcon(self.style().standardIcon(icon))
        if shortcut is not None:
            keys = [shortcut] if isinstance(shortcut, (str, QKeySequence.StandardKey)) else list(shortcut)
            action.setShortcuts([QKeySequence(k) for k in keys])
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        keys_text = _shortcut_text(action)
        tip = tip or text.replace("&", "").rstrip("…")
        action.setToolTip(f"{tip} ({keys_text})" if keys_text else tip)
        action.setStatusTip(tip)
        action.triggered.connect(lambda _checked=False: slot())
        self.addAction(action)
        return action

    def _make_actions(self) -> None:
        SP = QStyle.StandardPixmap
        # adding layers
        self.action_add_dream = self._act("Snapshot of the &Dreams", self.add_dream_snapshot, "Ctrl+Shift+D",
                                          "Add the current dream grid (the newest frame of the model's chains)")
        self.action_add_model = self._act("From a &Model…", self.add_model_layer_dialog, "Ctrl+Shift+T",
                                          "Sample a trained model: a seamless tiled texture or a single frame")
        self.action_add_dataset = self._act("Dataset &Image", self.add_dataset_image, "Ctrl+Shift+I",
                                            "Add the selected dataset image (as the models see it)")
        self.action_import = self._act("&Import Image…", self.import_image_dialog, "Ctrl+I",
                                       "Import a PNG (or JPEG, WebP, GIF; animated files become animated layers)",
                                       SP.SP_DialogOpenButton)
        self.add_menu = QMenu("Add layer", self)
        for a in (self.action_add_dream, self.action_add_model, self.action_add_dataset, None, self.action_import):
            self.add_menu.addSeparator() if a is None else self.add_menu.addAction(a)
        self.add_menu.aboutToShow.connect(self._refresh_add_menu)
        self.add_button = add_button = self._menu_button("Add", SP.SP_FileDialogNewFolder, self.add_menu,
                                                 "Add a layer: a dream snapshot, a model texture, a dataset image, an image file")

        # history
        self.action_undo = self._act("&Undo", self.undo, QKeySequence.StandardKey.Undo, "Undo", SP.SP_ArrowBack)
        self.action_redo = self._act("&Redo", self.redo, ["Ctrl+Shift+Z", "Ctrl+Y"], "Redo", SP.SP_ArrowForward)
        self.action_undo.setShortcuts([QKeySequence("Ctrl+Z")])
        self.action_undo.setToolTip("Undo (Ctrl+Z)")
        # layers
        self.action_raise = self._act("Raise", lambda: self.move_selected(+1), "Ctrl+]", "Move the layer up", SP.SP_ArrowUp)
        self.action_lower = self._act("Lower", lambda: self.move_selected(-1), "Ctrl+[", "Move the layer down",
                                      SP.SP_ArrowDown)
        self.action_duplicate = self._act("Duplicate", self.duplicate_selected, "Ctrl+J", "Duplicate the layer",
                                          SP.SP_FileDialogContentsView)
        self.action_delete = self._act("Delete", self.delete_selected, "Delete", "Delete the layer", SP.SP_TrashIcon)
        for a in (self.action_raise, self.action_lower, self.action_duplicate, self.action_delete):
            b = QToolButton()
            b.setDefaultAction(a)
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
            b.setAutoRaise(True)
            self.layer_buttons.addWidget(b)
        self.layer_buttons.addStretch(1)
        # view
        self.action_move = self._act("&Move", lambda: self.view.set_move_mode(self.action_move.isChecked()), "M",
                                     "Move tool: drag the selected layer on the canvas")
        self.action_move.setCheckable(True)
        self.action_fit = self._act("&Fit", self.fit, ["F", "Ctrl+0"], "Fit the canvas in the view")
        self.action_actual = self._act("100 %", lambda: self._zoom_to(1.0), "Ctrl+Alt+0", "Actual pixels")
        self.action_zoom_in = self._act("Zoom In", lambda: self.view.zoom_by(1.25), QKeySequence.StandardKey.ZoomIn)
        self.action_zoom_out = self._act("Zoom Out", lambda: self.view.zoom_by(0.8), QKeySequence.StandardKey.ZoomOut)
        self.action_size = self._act("Canvas &Size…", self.canvas_size_dialog, "Ctrl+Alt+C",
                                     "Canvas size (up to 4096 × 4096) and background")
        # export
        self.action_export_layers = self._act("Layers + Composite (PNG)…", self.export_layers_dialog, "Ctrl+Shift+E",
                                              "Export every layer and the composite as PNGs with provenance")
        self.action_export_png = self._act("Composite (PNG)…", self.export_composite_dialog, "Ctrl+E",
                                           "Export the composite as a PNG with provenance")
        self.action_export_ora = self._act("OpenRaster (.ora)…", self.export_ora_dialog, "Ctrl+Alt+E",
                                           "Export the layers as OpenRaster (opens in Krita and MyPaint)")
        self.action_export_psd = self._act("Photoshop (.psd)…", self.export_psd_dialog, "Ctrl+Alt+Shift+E",
                                           "Export the layers as a Photoshop file (opens in Photoshop, Affinity "
                                           "Photo, Photopea, Krita, GIMP)")
        self.action_export_anim = self._act("Animation (GIF / APNG)…", self.export_animation_dialog, None,
                                            "Export an animated layer's frames, composited, as a GIF or APNG")
        self.export_menu = QMenu("Export", self)
        for a in (self.action_export_layers, self.action_export_png, self.action_export_ora, self.action_export_psd,
                  self.action_export_anim):
            self.export_menu.addAction(a)
        self.export_button = export_button = self._menu_button("Export", SP.SP_DialogSaveButton, self.export_menu,
                                                 "Export PNGs with provenance, OpenRaster, Photoshop, or an animation")

        # The canvas menu: its size and how it is viewed (the view's keys work without it).
        self.canvas_menu = QMenu("Canvas", self)
        for a in (self.action_size, None, self.action_fit, self.action_actual, self.action_zoom_in,
                  self.action_zoom_out):
            self.canvas_menu.addSeparator() if a is None else self.canvas_menu.addAction(a)
        self.canvas_button = canvas_button = self._menu_button("Canvas", SP.SP_FileDialogDetailedView, self.canvas_menu,
                                                 "Canvas size and background, fit, 100 %, zoom")

        # A compact toolbar: at the default 1440×900 window the canvas pane is ~380 px wide, and
        # a toolbar wider than that hid Export and Canvas Size behind a faint "»". Menus hold
        # what does not need a button of its own; undo and redo are icons (their keys are known);
        # Fit lives in the Canvas menu and on F (with it the toolbar needed 372 of ~376 px, and
        # the docks' settling decided by a few pixels whether it overflowed).
        tb = self.toolbar
        for item in (add_button, export_button, canvas_button, None, self.action_undo, self.action_redo, None,
                     self.action_move):
            if item is None:
                tb.addSeparator()
            elif isinstance(item, QAction):
                tb.addAction(item)
            else:
                tb.addWidget(item)
        for a in (self.action_undo, self.action_redo):
            tb.widgetForAction(a).setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
