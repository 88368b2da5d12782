"""The dataset panel: drop zone, Open Folder, preprocessing, thumbnails, rejected files.

It shows the session's :class:`~studio.dataset.ImageSet` and sends intent back as signals
(``load_requested(sources)``, ``open_folder_requested()``, ``preprocess_changed(Preprocess)``,
``cancel_requested()``); the main window does the loading in a worker.
Thumbnails come from a list model that makes each picture only when the view asks for it, so a
set of 10,000 images costs nothing until scrolled through.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
from PySide6.QtCore import QAbstractListModel, QModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QImage, QPixmap
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
    QProgressBar,
    QPushButton,
    QSpinBox,
    QStyle,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible
from superqt.utils import qdebounced

from studio.dataset import BINARIZE, CROPS, MAX_TARGET, MIN_TARGET, ImageSet, Preprocess

THUMB = 56


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


def array_to_qimage(a: np.ndarray) -> QImage:
    """H×W (gray) or H×W×3 (RGB) uint8 → a QImage that owns its pixels."""
    a = np.ascontiguousarray(a)
    h, w = a.shape[:2]
    if a.ndim == 2:
        img = QImage(a.data, w, h, w, QImage.Format.Format_Grayscale8)
    else:
        img = QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return img.copy()


class ThumbnailModel(QAbstractListModel):
    """The images of an ImageSet as icons, made lazily and cached (LRU)."""

    def __init__(self, parent=None, cache_size: int = 3000) -> None:
        super().__init__(parent)
        self.images: ImageSet | None = None
        self._cache: OrderedDict[int, QPixmap] = OrderedDict()
        self._cache_size = cache_size

    def set_images(self, images: ImageSet | None) -> None:
        self.beginResetModel()
        self.images = images
        self._cache.clear()
        self.endResetModel()

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
        row = index.row()
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


class DatasetPanel(QWidget):
    """The left-hand panel. Views only: it never loads anything itself."""

    load_requested = Signal(list)
    open_folder_requested = Signal()
    preprocess_changed = Signal(object)
    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
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
        self.grid.setToolTip("The images as the models see them")

        self.rejected = QTreeWidget()
        self.rejected.setColumnCount(2)
        self.rejected.setHeaderLabels(["File", "Reason"])
        self.rejected.setRootIsDecorated(False)
        self.rejected.setAlternatingRowColors(True)
        self.rejected.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.rejected.header().setStretchLastSection(True)
        self.rejected.setColumnWidth(0, 150)

        self.views = QTabWidget()
        self.views.setDocumentMode(True)
        self.views.addTab(self.grid, "Images")
        self.views.addTab(self.rejected, "Rejected")

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
            it.setData(0, Qt.ItemDataRole.UserRole, p)
            it.setForeground(0, grey)
            it.setForeground(1, grey)
            items.append(it)
        self.rejected.addTopLevelItems(items)
        if n == 0 and (n_rej or n_ign):
            self.views.setCurrentWidget(self.rejected)

    def show_error(self, message: str) -> None:
        self.hide_loading()
        self.summary.setText(f"<span style='color:#e57373'>{message}</span>")

    # ----------------------------------------------------------------- for tests and scripts
    def thumbnail_count(self) -> int:
        return self.thumbnails.rowCount()

    def rejected_entries(self) -> list[tuple[str, str]]:
        out = []
        for i in range(self.rejected.topLevelItemCount()):
            it = self.rejected.topLevelItem(i)
            out.append((it.data(0, Qt.ItemDataRole.UserRole), it.text(1)))
        return out
