"""The Canvas tab's layer list and the selected layer's properties."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtGui import QColor, QIcon
from PySide6.QtWidgets import QListWidgetItem

from studio.canvas import CanvasState, GradientMap, Layer, Levels, Palette
from studio.ui.canvas.widgets import (
    _qcolour,
    _rgb,
    BLEND_TITLES,
    GRADIENT_PRESETS,
    PALETTE_PRESETS,
    thumbnail,
)


class LayerPanel:
    """The part of :class:`~studio.ui.canvas.view.CanvasView` that shows the layer list and
        edits the selected layer's properties."""

    # ------------------------------------------------------------------ layer list
    def _icon(self, layer: Layer) -> QIcon:
        pixels = layer.pixels
        hit = self._thumbs.get(id(pixels))
        if hit is not None and hit[0] is pixels:
            return hit[1]
        icon = QIcon(thumbnail(pixels))
        self._thumbs[id(pixels)] = (pixels, icon)
        return icon

    def _rebuild_list(self, state: CanvasState) -> None:
        live = {id(layer.pixels) for layer in state.layers}
        for key in [k for k in self._thumbs if k not in live]:
            del self._thumbs[key]
        lw = self.layer_list
        with QSignalBlocker(lw):
            lw.clear()
            current = None
            for layer in reversed(state.layers):
                item = QListWidgetItem(self._icon(layer), layer.name)
                item.setData(Qt.ItemDataRole.UserRole, layer.id)
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEditable
                              | Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsDragEnabled)
                item.setCheckState(Qt.CheckState.Checked if layer.visible else Qt.CheckState.Unchecked)
                bits = [BLEND_TITLES[layer.blend_mode]]
                if layer.opacity < 1:
                    bits.append(f"{layer.opacity:.0%}")
                if layer.tiling:
                    bits.append(f"{layer.tiling} tiles")
                if layer.frames:
                    bits.append(f"{len(layer.frames)} frames")
                h, w = layer.pixels.shape[:2]
                item.setToolTip(f"{layer.name}\n{w}×{h} px source · " + " · ".join(bits)
                                + "\nTick: visible · drag: reorder · double-click: rename")
                if not layer.visible:
                    item.setForeground(QColor("#6b7079"))
                lw.addItem(item)
                if layer.id == self.selected_id:
                    current = item
            if current is not None:
                lw.setCurrentItem(current)
        self.props_stack.setCurrentIndex(1 if state.layers else 0)
        self._update_layer_actions()

    def _row_layer_id(self, item: QListWidgetItem | None) -> str | None:
        return None if item is None else item.data(Qt.ItemDataRole.UserRole)

    def _current_item_changed(self, current: QListWidgetItem | None, _previous=None) -> None:
        lid = self._row_layer_id(current)
        if lid is not None and lid != self.selected_id:
            self.canvas.end_merge()
            self.selected_id = lid
            self._load_props()
            self._update_outline()
            self._update_layer_actions()

    def _item_changed(self, item: QListWidgetItem) -> None:
        lid = self._row_layer_id(item)
        if lid is None:
            return
        try:
            layer = self.canvas.layer(lid)
        except KeyError:
            return
        visible = item.checkState() == Qt.CheckState.Checked
        name = item.text().strip()
        changes: dict[str, Any] = {}
        if visible != layer.visible:
            changes["visible"] = visible
        if name and name != layer.name:
            changes["name"] = name
        if changes:
            self._edit_layer(lid, **changes)

    def _list_reordered(self) -> None:
        """The person dragged a row: apply the list's order to the canvas in one undo step."""
        lw = self.layer_list
        order = [lw.item(r).data(Qt.ItemDataRole.UserRole) for r in range(lw.count())][::-1]  # bottom first
        if order == [layer.id for layer in self.canvas.layers] or sorted(order) != sorted(l.id for l in self.canvas.layers):
            self._schedule(list_=True)
            return
        with self.canvas.macro("Reorder layers"):
            for index, lid in enumerate(order):
                self.canvas.reorder_layer(lid, index)
        self.flush()

    def selected_layer(self) -> Layer | None:
        if self.selected_id is None:
            return None
        try:
            return self.canvas.layer(self.selected_id)
        except KeyError:
            return None

    def select_layer(self, layer_id: str) -> None:
        self.canvas.end_merge()
        self.selected_id = layer_id
        self._schedule(list_=True, props=True)
        self.flush()

    def _update_layer_actions(self) -> None:
        layers = self.canvas.layers
        layer = self.selected_layer()
        index = self.canvas.index_of(layer.id) if layer is not None else -1
        self.action_raise.setEnabled(layer is not None and index < len(layers) - 1)
        self.action_lower.setEnabled(layer is not None and index > 0)
        self.action_duplicate.setEnabled(layer is not None)
        self.action_delete.setEnabled(layer is not None)
        self.action_export_anim.setEnabled(any(layer.frames for layer in layers))

    # ------------------------------------------------------------------ properties
    def _load_props(self) -> None:
        layer = self.selected_layer()
        self.props.setEnabled(layer is not None)
        if layer is None:
            self.provenance_label.setText("")
            return
        self._loading = True
        try:
            widgets = [self.name_edit, self.blend_box, self.opacity_slider, self.opacity_spin, self.x_spin, self.y_spin,
                       self.scale_spin, self.resample_box, self.tiling_box, self.colourise_box, self.invert_check,
                       self.frame_spin, self.gradient_mid, self.palette_count, *self.level_spins.values(),
                       *self.gradient_buttons, *self.palette_buttons]
            blockers = [QSignalBlocker(w) for w in widgets]
            if not self.name_edit.hasFocus():
                self.name_edit.setText(layer.name)
            self.blend_box.setCurrentIndex(self.blend_box.findData(layer.blend_mode))
            self.opacity_slider.setValue(round(layer.opacity * 100))
            self.opacity_spin.setValue(round(layer.opacity * 100))
            self.x_spin.setValue(layer.x)
            self.y_spin.setValue(layer.y)
            self.scale_spin.setValue(layer.scale)
            self.resample_box.setCurrentIndex(self.resample_box.findData(layer.resample))
            self.tiling_box.setCurrentIndex(self.tiling_box.findData(layer.tiling))
            self.invert_check.setChecked(layer.invert)
            for key, spin in self.level_spins.items():
                spin.setValue(getattr(layer.levels, key))
            colourise = layer.colourise
            if isinstance(colourise, GradientMap):
                self.colourise_box.setCurrentIndex(1)
                stops = colourise.stops
                self.gradient_buttons[0].set_colour(_qcolour(stops[0][1]))
                self.gradient_buttons[2].set_colour(_qcolour(stops[-1][1]))
                mid = len(stops) >= 3
                self.gradient_mid.setChecked(mid)
                if mid:
                    self.gradient_buttons[1].set_colour(_qcolour(stops[len(stops) // 2][1]))
            elif isinstance(colourise, Palette):
                self.colourise_box.setCurrentIndex(2)
                colours = colourise.colours[:8]
                self.palette_count.setValue(max(2, len(colours)))
                for b, c in zip(self.palette_buttons, colours):
                    b.set_colour(_qcolour(c))
            else:
                self.colourise_box.setCurrentIndex(0)
            self._show_colour_editor()
            n = len(layer.frames)
            self.anim_box.setVisible(n > 0)
            self.frame_spin.setRange(0, max(0, n - 1))
            self.frame_spin.setValue(layer.frame_index)
            self.frames_label.setText(f"of {n} (0–{n - 1})" if n else "")
            del blockers
        finally:
            self._loading = False
        self.provenance_label.setText(self._provenance_text(layer))

    @staticmethod
    def _provenance_text(layer: Layer) -> str:
        p = layer.provenance
        h, w = layer.pixels.shape[:2]
        bits = [f"{w}×{h} px"]
        source = p.get("source")
        if source:
            bits.append(str(source))
        for key, label in (("model", "model"), ("seed", "seed"), ("steps", "steps"), ("temperature", "T"),
                           ("file", "file"), ("path", "path")):
            value = p.get(key)
            if value is not None and not (key == "path" and p.get("file")):
                bits.append(f"{label} {Path(str(value)).name if key == 'path' else value}")
        sha = p.get("checkpoint_sha256")
        if sha:
            bits.append(f"checkpoint {str(sha)[:12]}…")
        return "Provenance: " + " · ".join(bits)

    def _show_colour_editor(self) -> None:
        kind = self.colourise_box.currentData()
        self.colour_stack.setCurrentIndex({None: 0, "gradient": 1, "palette": 2}[kind])
        self.gradient_buttons[1].setVisible(self.gradient_mid.isChecked())
        n = self.palette_count.value()
        for i, b in enumerate(self.palette_buttons):
            b.setVisible(i < n)
        self.colour_stack.setVisible(kind is not None)

    def _edit(self, merge: bool = False, **changes: Any) -> None:
        """Apply a property edit to the selected layer (ignored while the panel is loading)."""
        if self._loading or self.selected_id is None:
            return
        self._edit_layer(self.selected_id, merge=merge, **changes)

    def _edit_layer(self, layer_id: str, merge: bool = False, **changes: Any) -> Layer | None:
        try:
            return self.canvas.set_layer(layer_id, merge=merge, **changes)
        except (ValueError, TypeError) as exc:
            self._status(f"Not applied: {exc}", 6000)
            self._schedule(props=True)
            return None
        except KeyError:
            return None

    def _opacity_slid(self, value: int) -> None:
        if self._loading:
            return
        with QSignalBlocker(self.opacity_spin):
            self.opacity_spin.setValue(value)
        self._edit(merge=True, opacity=value / 100)

    def _levels_changed(self) -> None:
        if self._loading:
            return
        values = {k: s.value() for k, s in self.level_spins.items()}
        if values["in_white"] <= values["in_black"]:
            self._status("Levels: the input white point must be above the black point", 4000)
            return
        self._edit(merge=True, levels=Levels(**values))

    def _colourise_kind_changed(self, _index: int) -> None:
        if self._loading:
            return
        kind = self.colourise_box.currentData()
        if kind == "gradient" and all(b.colour == QColor("#000000") for b in self.gradient_buttons):
            self._set_gradient_colours(GRADIENT_PRESETS["Ember"])
        if kind == "palette" and all(b.colour == QColor("#000000") for b in self.palette_buttons):
            self._set_palette_colours(PALETTE_PRESETS["Risograph"])
        self._show_colour_editor()
        self._apply_colourise()

    def _set_gradient_colours(self, colours: Sequence[str]) -> None:
        with QSignalBlocker(self.gradient_mid):
            self.gradient_mid.setChecked(len(colours) >= 3)
        self.gradient_buttons[0].set_colour(colours[0])
        self.gradient_buttons[2].set_colour(colours[-1])
        if len(colours) >= 3:
            self.gradient_buttons[1].set_colour(colours[1])
        self._show_colour_editor()

    def _set_palette_colours(self, colours: Sequence[str]) -> None:
        with QSignalBlocker(self.palette_count):
            self.palette_count.setValue(len(colours))
        for b, c in zip(self.palette_buttons, colours):
            b.set_colour(c)
        self._show_colour_editor()

    def set_gradient_colour(self, index: int, colour: QColor | str) -> None:
        """Set gradient stop ``index`` (0 dark, 1 middle, 2 light) and apply (as the colour picker does)."""
        if index == 1 and not self.gradient_mid.isChecked():
            with QSignalBlocker(self.gradient_mid):
                self.gradient_mid.setChecked(True)
        self.gradient_buttons[index].set_colour(colour, emit=True)

    def _gradient_mid_toggled(self, on: bool) -> None:
        if on and self.gradient_buttons[1].colour == QColor("#000000"):
            a, b = self.gradient_buttons[0].colour, self.gradient_buttons[2].colour
            mid = QColor((a.red() + b.red()) // 2, (a.green() + b.green()) // 2, (a.blue() + b.blue()) // 2)
            self.gradient_buttons[1].set_colour(mid)
        self._show_colour_editor()
        self._apply_colourise()

    def _gradient_preset_chosen(self, _index: int) -> None:
        name = self.gradient_preset.currentData()
        if name:
            self._set_gradient_colours(GRADIENT_PRESETS[name])
            self._apply_colourise()
        with QSignalBlocker(self.gradient_preset):
            self.gradient_preset.setCurrentIndex(0)

    def _palette_preset_chosen(self, _index: int) -> None:
        name = self.palette_preset.currentData()
        if name:
            self._set_palette_colours(PALETTE_PRESETS[name])
            self._apply_colourise()
        with QSignalBlocker(self.palette_preset):
            self.palette_preset.setCurrentIndex(0)

    def _palette_count_changed(self, _n: int) -> None:
        self._show_colour_editor()
        self._apply_colourise()

    def current_colourise(self) -> GradientMap | Palette | None:
        """The colourise setting the panel describes."""
        kind = self.colourise_box.currentData()
        if kind == "gradient":
            b = self.gradient_buttons
            stops = [(0.0, _rgb(b[0].colour))]
            if self.gradient_mid.isChecked():
                stops.append((0.5, _rgb(b[1].colour)))
            stops.append((1.0, _rgb(b[2].colour)))
            return GradientMap(tuple(stops))
        if kind == "palette":
            return Palette(tuple(_rgb(b.colour) for b in self.palette_buttons[: self.palette_count.value()]))
        return None

    def _apply_colourise(self) -> None:
        if self._loading:
            return
        self._edit(colourise=self.current_colourise())
