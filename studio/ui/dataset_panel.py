"""The dataset panel: drop zone, Open Folder, preprocessing, thumbnails, rejected files.

It shows the session's :class:`~studio.dataset.ImageSet` and sends intent back as signals
(``load_requested(sources)``, ``open_folder_requested()``, ``preprocess_changed(Preprocess)``,
``cancel_requested()``); the main window does the loading in a worker.
Thumbnails come from a list model that makes each picture only when the view asks for it, so a
set of 10,000 images costs nothing until scrolled through.

Latent actions (the thumbnails' context menu, enabled once the Latent tab has an explorer over
this set: :meth:`DatasetPanel.set_explorer`): "Find similar" lists the k nearest images in
latent space (the image itself first) in the "Similar" tab and selects them; "Sort by
outlierness" reorders the thumbnails, most unusual first, and, for the AE+RBM hybrid, "Sort by
free energy" puts first the images whose codes its RBM finds least likely ("Original order" goes
back either); "Denoise
through the autoencoder" emits :attr:`DatasetPanel.denoised` (the main window shows it with a
"To canvas" button). Each runs on the explorer in a worker (the explorer serialises its calls).
With the view reordered a row is not a set index: :meth:`DatasetPanel.selected_set_indices`
maps the selection back.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
from PySide6.QtCore import (
    QAbstractListModel,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QRect,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QAction, QBrush, QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible
from superqt.utils import qdebounced

from studio.dataset import ImageSet, Preprocess
from studio.dataset.records import BINARIZE, CROPS, MAX_TARGET, MIN_TARGET
from studio.ui.qimage import array_to_qimage

THUMB = 56
SIMILAR_K = 12


def local_paths(mime) -> list[str]:
    """Local files and folders named by a drag's mime data (URLs or plain text paths)."""
    paths: list[str] = []
    if mime is None:
        return paths
    if mime.hasUrls():
        paths = [u.toLocalFile() for u in mime.urls() if u.isLocalFile() and u.toLocalFile()]
    elif mime.hasText():
        paths = [line.strip() for line in mime.text().splitlines()
                 if line.strip() and Path(line.strip()).exists()]
    return paths


class ThumbnailModel(QAbstractListModel):
    """The images of an ImageSet as icons, made lazily and cached (LRU)."""

    def __init__(self, parent=None, cache_size: int = 3000) -> None:
        super().__init__(parent)
        self.images: ImageSet | None = None
        self.order: list[int] | None = None  # row -> set index (None: the set's own order)
        self._cache: OrderedDict[int, QPixmap] = OrderedDict()  # keyed by set index
        self._cache_size = cache_size

    def set_images(self, images: ImageSet | None) -> None:
        self.beginResetModel()
        self.images = images
        self.order = None
        self._cache.clear()
        self.endResetModel()

    def set_order(self, order: list[int] | None) -> None:
        """Show the images in ``order`` (set indices, a permutation); None: the set's order."""
        if order is not None and self.images is not None and sorted(order) != list(range(len(self.images))):
            raise ValueError("an order must list every image of the set once")
        self.beginResetModel()
        self.order = None if order is None else [int(i) for i in order]
        self.endResetModel()

    def set_index(self, row: int) -> int:
        """The set index shown at ``row``."""
        return row if self.order is None else self.order[row]

    def row_of(self, index: int) -> int:
        """The row showing set image ``index``."""
        return index if self.order is None else self.order.index(index)

    def pixmap(self, index: int) -> QPixmap:
        """Set image ``index``'s thumbnail."""
        return self._pixmap(index)

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802 - Qt API
        return 0 if parent.isValid() or self.images is None else len(self.images)

    def _pixmap(self, row: int) -> QPixmap:
        pix = self._cache.get(row)
        if pix is not None:
            self._cache.move_to_end(row)
            return pix
        assert self.images is not None
        img = array_to_qimage(self.images.image(row))
        pix = QPixmap.fromImage(img.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.FastTransformation))
        self._cache[row] = pix
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return pix

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or self.images is None:
            return None
        row = self.set_index(index.row())
        if role == Qt.ItemDataRole.DecorationRole:
            return self._pixmap(row)
        if role == Qt.ItemDataRole.ToolTipRole:
            path = self.images.paths[row]
            tip = path
            if row < len(self.images.info):
                i = self.images.info[row]
                tip += f"\n{i.format} {i.width}×{i.height} {i.mode}"
                if i.notes:
                    tip += "\n" + "; ".join(i.notes)
            return tip
        if role == Qt.ItemDataRole.UserRole:
            return self.images.paths[row]
        return None


class DropZone(QFrame):
    """Takes folders and image files dragged from the file manager; emits ``dropped(paths)``."""

    dropped = Signal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("DropZone")
        self.setAcceptDrops(True)
        self.setMinimumHeight(58)
        self.label = QLabel("Drop folders or images here")
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.addWidget(self.label)
        self.setToolTip("Drag folders or image files here from your file manager to train on them.\n"
                        "Folders are read recursively; files that are not usable images are listed "
                        "under Rejected with the reason.")
        self._set_hover(False)

    def _set_hover(self, on: bool) -> None:
        border = "#4fc3f7" if on else "#5a606b"
        bg = "rgba(79,195,247,0.12)" if on else "transparent"
        self.setStyleSheet(f"#DropZone {{ border: 2px dashed {border}; border-radius: 8px; background: {bg}; }}")

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt API
        if local_paths(event.mimeData()):
            event.setDropAction(Qt.DropAction.CopyAction)
            event.accept()
            self._set_hover(True)
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if local_paths(event.mimeData()):
            event.setDropAction(Qt.DropAction.CopyAction)
            event.accept()
        else:
            event.ignore()

    def dragLeaveEvent(self, event) -> None:  # noqa: N802
        self._set_hover(False)
        event.accept()

    def dropEvent(self, event) -> None:  # noqa: N802
        self._set_hover(False)
        paths = local_paths(event.mimeData())
        if not paths:
            event.ignore()
            return
        event.setDropAction(Qt.DropAction.CopyAction)
        event.accept()
        self.dropped.emit(paths)


class PreprocessForm(QWidget):
    """Size, crop, colour, binarization; ``changed(Preprocess)`` after edits settle (debounced)."""

    changed = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        form = QFormLayout(self)
        form.setContentsMargins(4, 2, 4, 2)
        self.size = QSpinBox()
        self.size.setRange(MIN_TARGET, MAX_TARGET)
        self.size.setSuffix(" px")
        self.size.setToolTip("Every image becomes a square of this many pixels a side.")
        self.crop = QComboBox()
        self.crop.addItems(list(CROPS))
        self.crop.setToolTip("center: fill the square and crop the middle; fit: letterbox with the "
                             "background colour; stretch: distort to the square.")
        self.color = QCheckBox("RGB colour")
        self.color.setToolTip("Off: grayscale (1 channel); on: RGB (3 channels; slower to train).")
        self.binarize = QComboBox()
        self.binarize.addItems(["off" if b is None else b for b in BINARIZE])
        self.binarize.setToolTip("Binary RBMs like black-and-white images: threshold or dither them.")
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setToolTip("Pixels at or above this brightness become white.")
        form.addRow("Size", self.size)
        form.addRow("Crop", self.crop)
        form.addRow("", self.color)
        form.addRow("Binarize", self.binarize)
        form.addRow("Threshold", self.threshold)
        self.set_preprocess(Preprocess())
        for sig in (self.size.valueChanged, self.crop.currentIndexChanged, self.color.toggled,
                    self.binarize.currentIndexChanged, self.threshold.valueChanged):
            sig.connect(self._edited)
        self._quiet = False

    def set_preprocess(self, pp: Preprocess) -> None:
        self._quiet = True
        try:
            self.size.setValue(pp.size)
            self.crop.setCurrentText(pp.crop)
            self.color.setChecked(pp.color)
            self.binarize.setCurrentText(pp.binarize or "off")
            self.threshold.setValue(pp.threshold)
            self.threshold.setEnabled(pp.binarize == "threshold")
        finally:
            self._quiet = False

    def preprocess(self, base: Preprocess | None = None) -> Preprocess:
        b = self.binarize.currentText()
        kw = base.to_dict() if base is not None else {}
        kw.update(size=self.size.value(), crop=self.crop.currentText(), color=self.color.isChecked(),
                  binarize=None if b == "off" else b, threshold=round(self.threshold.value(), 3))
        return Preprocess.from_dict(kw)

    def _edited(self, *_):
        self.threshold.setEnabled(self.binarize.currentText() == "threshold")
        if not getattr(self, "_quiet", False):
            self._emit_changed()

    @qdebounced(timeout=350)
    def _emit_changed(self) -> None:
        self.changed.emit(self.preprocess())


class WrappingDelegate(QStyledItemDelegate):
    """Rows as tall as their text wrapped to the column's width: Qt's own delegate measures the
    text on one line, so a tree view's rows never grow and a long reason was cut off."""

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802 (Qt's name)
        base = super().sizeHint(option, index)
        view = self.parent()
        text = index.data()
        if not isinstance(text, str) or not hasattr(view, "columnWidth"):
            return base
        width = max(20, view.columnWidth(index.column()) - 10)  # less the item's margins
        rect = option.fontMetrics.boundingRect(QRect(0, 0, width, 100_000), int(Qt.TextFlag.TextWordWrap), text)
        return QSize(base.width(), max(base.height(), rect.height() + 4))


class DatasetPanel(QWidget):
    """The left-hand panel. Views only: it never loads anything itself."""

    load_requested = Signal(list)
    open_folder_requested = Signal()
    preprocess_changed = Signal(object)
    cancel_requested = Signal()
    #: A denoised image: (set index, original uint8 [H, W, C], denoised uint8 [H, W, C]).
    denoised = Signal(int, object, object)
    #: A short message for the status bar.
    status_message = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.explorer = None  # a studio.latent.LatentExplorer over this set (set_explorer)
        self.similar: list[tuple[int, float]] = []  # the last "Find similar": (set index, distance)
        self.latent_busy = 0
        style = self.style()

        self.drop_zone = DropZone()
        self.drop_zone.dropped.connect(self.load_requested)
        self.open_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_DirOpenIcon), "Open Folder…")
        self.open_button.setToolTip("Choose a folder of images (Ctrl+O)")
        self.open_button.clicked.connect(self.open_folder_requested)
        self.demo_button = QPushButton("Demo set")
        self.demo_button.setToolTip("Load the built-in demo images")
        self.demo_button.clicked.connect(lambda: self.load_requested.emit([]))
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button, 1)
        buttons.addWidget(self.demo_button)

        self.summary = QLabel("No images yet")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.cancel_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_DialogCancelButton), "")
        self.cancel_button.setToolTip("Cancel loading (Esc)")
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.progress_row = QWidget()
        pr = QHBoxLayout(self.progress_row)
        pr.setContentsMargins(0, 0, 0, 0)
        pr.addWidget(self.progress, 1)
        pr.addWidget(self.cancel_button)
        self.progress_row.hide()

        self.preprocess_form = PreprocessForm()
        self.preprocess_form.changed.connect(self.preprocess_changed)
        self.preprocess_box = QCollapsible("Preprocessing", collapsedIcon="▶")
        self.preprocess_box.addWidget(self.preprocess_form)
        self.preprocess_box.expand(animate=False)

        self.thumbnails = ThumbnailModel(self)
        self.grid = QListView()
        self.grid.setModel(self.thumbnails)
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setIconSize(QSize(THUMB, THUMB))
        self.grid.setGridSize(QSize(THUMB + 6, THUMB + 6))
        self.grid.setUniformItemSizes(True)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setLayoutMode(QListView.LayoutMode.Batched)
        self.grid.setBatchSize(200)
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.grid.setToolTip("The images as the models see them (right-click: latent actions)")
        self.grid.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.grid.customContextMenuRequested.connect(self._context_menu)
        self.find_similar_action = QAction("Find similar", self)
        self.find_similar_action.setToolTip("The nearest images in the latent space, nearest first")
        self.find_similar_action.triggered.connect(lambda: self.find_similar())
        self.sort_outliers_action = QAction("Sort by outlierness", self)
        self.sort_outliers_action.setToolTip("The images the model reconstructs worst first")
        self.sort_outliers_action.triggered.connect(lambda: self.sort_by_outlierness())
        self.sort_free_energy_action = QAction("Sort by free energy", self)
        self.sort_free_energy_action.setToolTip("The images whose codes the hybrid's RBM finds least likely first "
                                                "(highest free energy)")
        self.sort_free_energy_action.triggered.connect(lambda: self.sort_by_outlierness("free_energy"))
        self.original_order_action = QAction("Original order", self)
        self.original_order_action.triggered.connect(self.original_order)
        self.denoise_action = QAction("Denoise through the autoencoder", self)
        self.denoise_action.triggered.connect(lambda: self.denoise())
        self.latent_actions = (self.find_similar_action, self.sort_outliers_action, self.sort_free_energy_action,
                               self.original_order_action, self.denoise_action)

        self.grid.selectionModel().selectionChanged.connect(lambda *_: self._update_latent_actions())

        self.similar_list = QListWidget()
        self.similar_list.setViewMode(QListView.ViewMode.IconMode)
        self.similar_list.setIconSize(QSize(THUMB, THUMB))
        self.similar_list.setMovement(QListView.Movement.Static)
        self.similar_list.setResizeMode(QListView.ResizeMode.Adjust)
        self.similar_list.setToolTip("Find similar: the nearest images in latent space, nearest first")
        self.similar_list.itemActivated.connect(self._similar_activated)

        self.rejected = QTreeWidget()
        self.rejected.setColumnCount(2)
        self.rejected.setHeaderLabels(["File", "Reason"])
        self.rejected.setRootIsDecorated(False)
        self.rejected.setAlternatingRowColors(True)
        self.rejected.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.rejected.header().setStretchLastSection(True)
        self.rejected.setColumnWidth(0, 110)
        # The panel is narrow: a reason wraps onto more lines rather than being cut off (its
        # full text, and the file's path, are in the tooltips too).
        self.rejected.setWordWrap(True)
        self.rejected.setUniformRowHeights(False)
        self.rejected.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.rejected.setItemDelegate(WrappingDelegate(self.rejected))
        self.rejected.header().sectionResized.connect(lambda *_: self.rejected.doItemsLayout())

        self.views = QTabWidget()
        self.views.setDocumentMode(True)
        self.views.addTab(self.grid, "Images")
        self.views.addTab(self.rejected, "Rejected")
        self.views.addTab(self.similar_list, "Similar")
        self._update_latent_actions()

        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(self.drop_zone)
        lay.addLayout(buttons)
        lay.addWidget(self.progress_row)
        lay.addWidget(self.preprocess_box)
        lay.addWidget(self.summary)
        lay.addWidget(self.views, 1)

    # ----------------------------------------------------------------- drops anywhere on the panel
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        self.drop_zone.dragEnterEvent(event)

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        self.drop_zone.dragMoveEvent(event)

    def dragLeaveEvent(self, event) -> None:  # noqa: N802
        self.drop_zone.dragLeaveEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        self.drop_zone.dropEvent(event)

    # ----------------------------------------------------------------- showing state
    def set_preprocess(self, pp: Preprocess) -> None:
        self.preprocess_form.set_preprocess(pp)

    def show_loading(self, done: int, total: int) -> None:
        self.progress_row.show()
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self.progress.setFormat(f"Loading {done} / {total} files" if total else "Scanning…")

    def show_loading_started(self, label: str) -> None:
        self.progress_row.show()
        self.progress.setRange(0, 0)  # busy until the scan knows how many files
        self.progress.setFormat(f"Scanning {label}…")

    def hide_loading(self) -> None:
        self.progress_row.hide()

    def show_images(self, images: ImageSet, source_label: str = "") -> None:
        self.hide_loading()
        self.thumbnails.set_images(images)
        self.set_explorer(None)  # another set: the explorer's codes no longer match
        n, n_rej, n_ign = len(images), len(images.rejected), len(images.ignored)
        where = f" from {source_label}" if source_label else ""
        text = f"<b>{n}</b> image{'s' if n != 1 else ''}{where} · {images.preprocess.describe()}"
        if n_rej:
            text += f" · <span style='color:#ffb74d'>{n_rej} rejected</span>"
        if n_ign:
            text += f" · {n_ign} ignored"
        if n == 0:
            text += "<br><span style='color:#e57373'>Nothing to train on: drop a folder of images.</span>"
        self.summary.setText(text)
        self.views.setTabText(0, f"Images ({n})")
        self.views.setTabText(1, f"Rejected ({n_rej + n_ign})")
        self.rejected.clear()
        items = []
        for r in images.rejected:
            it = QTreeWidgetItem([Path(r.path).name or r.path, r.reason])
            it.setToolTip(0, r.path)
            it.setToolTip(1, r.reason)
            it.setData(0, Qt.ItemDataRole.UserRole, r.path)
            items.append(it)
        grey = QBrush(QColor("#8a9099"))
        for p in images.ignored:
            it = QTreeWidgetItem([Path(p).name, "ignored: not an image file by its name"])
            it.setToolTip(0, p)
            it.setToolTip(1, "ignored: not an image file by its name")
            it.setData(0, Qt.ItemDataRole.UserRole, p)
            it.setForeground(0, grey)
            it.setForeground(1, grey)
            items.append(it)
        self.rejected.addTopLevelItems(items)
        if n == 0 and (n_rej or n_ign):
            self.views.setCurrentWidget(self.rejected)
        elif not (n_rej or n_ign) and self.views.currentWidget() is self.rejected:
            self.views.setCurrentWidget(self.grid)  # an empty Rejected tab shows nothing: the images instead

    def show_error(self, message: str) -> None:
        self.hide_loading()
        self.summary.setText(f"<span style='color:#e57373'>{message}</span>")

    # ----------------------------------------------------------------- latent actions
    def set_explorer(self, explorer) -> None:
        """The Latent tab's explorer (None: none). The actions are enabled when it encoded
        exactly this set (denoising needs only the images' shape)."""
        self.explorer = explorer
        self.similar = []
        self.similar_list.clear()
        if self.thumbnails.order is not None:
            self.thumbnails.set_order(None)
        self._update_latent_actions()

    def _explorer_matches_set(self) -> bool:
        ex, images = self.explorer, self.thumbnails.images
        return (ex is not None and images is not None and ex.means is not None and len(ex.means) == len(images)
                and tuple(ex.image_shape) == tuple(images.shape))

    def _update_latent_actions(self) -> None:
        ex, images = self.explorer, self.thumbnails.images
        matches = self._explorer_matches_set()
        has_selection = bool(self.selected_set_indices())
        self.find_similar_action.setEnabled(matches and has_selection)
        self.sort_outliers_action.setEnabled(matches)
        self.sort_free_energy_action.setEnabled(matches and ex.kind == "hybrid")
        self.original_order_action.setEnabled(self.thumbnails.order is not None)
        self.denoise_action.setEnabled(ex is not None and images is not None and has_selection
                                       and tuple(ex.image_shape) == tuple(images.shape))
        why = "" if ex is not None else " (needs a VAE or an autoencoder in the Latent tab)"
        for action in self.latent_actions:
            action.setStatusTip(action.toolTip() + why)
        if ex is not None and ex.kind != "hybrid":
            self.sort_free_energy_action.setStatusTip(self.sort_free_energy_action.toolTip() + " (needs the AE+RBM hybrid)")

    def context_menu(self) -> QMenu:
        """The thumbnails' context menu (its actions enabled for the current state)."""
        self._update_latent_actions()
        menu = QMenu(self)
        menu.addAction(self.find_similar_action)
        menu.addAction(self.sort_outliers_action)
        menu.addAction(self.sort_free_energy_action)
        menu.addAction(self.original_order_action)
        menu.addSeparator()
        menu.addAction(self.denoise_action)
        return menu

    def _context_menu(self, pos) -> None:
        menu = self.context_menu()
        menu.exec(self.grid.viewport().mapToGlobal(pos))
        menu.deleteLater()

    def selected_set_indices(self) -> list[int]:
        """The selected images' set indices, ascending (whatever order the view shows)."""
        model = self.grid.selectionModel()
        if model is None or self.thumbnails.images is None:
            return []
        return sorted({self.thumbnails.set_index(i.row()) for i in model.selectedIndexes()})

    def select_set_indices(self, indices: list[int]) -> None:
        """Select these set images and scroll to the first."""
        if self.thumbnails.images is None:
            return
        sel = QItemSelection()
        for i in indices:
            idx = self.thumbnails.index(self.thumbnails.row_of(int(i)), 0)
            sel.select(idx, idx)
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect
        self.grid.selectionModel().select(sel, flags)
        if indices:
            first = self.thumbnails.index(self.thumbnails.row_of(int(indices[0])), 0)
            self.grid.selectionModel().setCurrentIndex(first, QItemSelectionModel.SelectionFlag.NoUpdate)
            self.grid.scrollTo(first)

    def _run(self, fn, on_result, what: str) -> None:
        from studio.ui.workers import run_in_background

        ex = self.explorer

        def done(result):
            self.latent_busy -= 1
            if ex is self.explorer:  # a result for another explorer (or set) is dropped
                on_result(result)

        def failed(exc):
            self.latent_busy -= 1
            self.status_message.emit(f"{what} failed: {exc}")

        self.latent_busy += 1
        self.status_message.emit(f"{what}…")
        run_in_background(fn, on_result=done, on_error=failed)

    def _index_or_first_selected(self, index: int | None) -> int | None:
        """`index` as a set index, or the first selected image's (None: nothing selected)."""
        if index is not None:
            return int(index)
        rows = self.selected_set_indices()
        return rows[0] if rows else None

    def find_similar(self, index: int | None = None, k: int = SIMILAR_K) -> None:
        """The ``k`` nearest images to set image ``index`` (default: the first selected) in the
        worker; they fill the "Similar" tab, nearest (the image itself) first, and are selected."""
        ex = self.explorer
        index = self._index_or_first_selected(index)
        if not self._explorer_matches_set() or index is None:
            return
        self._run(lambda: ex.nearest(index, k=k), self._show_similar, "Finding similar images")

    def _show_similar(self, result: list[tuple[int, float]]) -> None:
        self.similar = [(int(i), float(d)) for i, d in result]
        self.similar_list.clear()
        for i, d in self.similar:
            item = QListWidgetItem(QIcon(self.thumbnails.pixmap(i)), f"{i}")
            item.setToolTip(f"image {i}: latent distance {d:.3g}")
            item.setData(Qt.ItemDataRole.UserRole, i)
            self.similar_list.addItem(item)
        self.views.setTabText(2, f"Similar ({len(self.similar)})")
        self.select_set_indices([i for i, _ in self.similar])
        if self.similar:
            self.status_message.emit(f"{len(self.similar)} images nearest to image {self.similar[0][0]}")

    def _similar_activated(self, item: QListWidgetItem) -> None:
        i = item.data(Qt.ItemDataRole.UserRole)
        if i is not None:
            self.views.setCurrentWidget(self.grid)
            self.select_set_indices([int(i)])

    def sort_by_outlierness(self, by: str = "recon") -> None:
        """Reorder the thumbnails, most unusual first (``LatentExplorer.outlier_order``), in the
        worker: by reconstruction error, or (`by="free_energy"`, the hybrid) by the free energy
        its RBM gives each image's code."""
        ex = self.explorer
        if not self._explorer_matches_set() or (by == "free_energy" and ex.kind != "hybrid"):
            return
        what = "free energy" if by == "free_energy" else "outlierness"
        self._run(lambda: ex.outlier_order(by), lambda order: self._apply_outlier_order(order, what), f"Sorting by {what}")

    def _apply_outlier_order(self, order: list[int], what: str = "outlierness") -> None:
        keep = self.selected_set_indices()
        self.thumbnails.set_order(order)
        if keep:
            self.select_set_indices(keep)
        self.views.setCurrentWidget(self.grid)
        self.grid.scrollToTop()
        self._update_latent_actions()
        first = "Least likely codes first" if what == "free energy" else "Most unusual images first"
        self.status_message.emit(f"{first} (Original order goes back)")

    def original_order(self) -> None:
        keep = self.selected_set_indices()
        self.thumbnails.set_order(None)
        if keep:
            self.select_set_indices(keep)
        self._update_latent_actions()

    def denoise(self, index: int | None = None) -> None:
        """Set image ``index`` (default: the first selected) through the autoencoder, in the
        worker; the result comes out of :attr:`denoised`."""
        ex, images = self.explorer, self.thumbnails.images
        index = self._index_or_first_selected(index)
        if ex is None or images is None or tuple(ex.image_shape) != tuple(images.shape) or index is None:
            return
        original = np.ascontiguousarray(images.images[index])

        def work():
            return ex.denoise(original)

        def show(out):
            self.denoised.emit(index, np.ascontiguousarray(original.transpose(1, 2, 0)), out)
            self.status_message.emit(f"Image {index} denoised")

        self._run(work, show, "Denoising")

    # ----------------------------------------------------------------- for tests and scripts
    def thumbnail_count(self) -> int:
        return self.thumbnails.rowCount()

    def rejected_entries(self) -> list[tuple[str, str]]:
        out = []
        for i in range(self.rejected.topLevelItemCount()):
            it = self.rejected.topLevelItem(i)
            out.append((it.data(0, Qt.ItemDataRole.UserRole), it.text(1)))
        return out
