"""The main window's unsaved work: autosave, recovery of a killed studio's work, sweeping."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from studio.autosave import Orphan, dataset_key, discard, find_orphans, recovery_meta, write_recovery
from studio.ui.workers import run_in_background


class Recovery:
    """The part of :class:`~studio.ui.main_window.window.MainWindow` that autosaves, offers to
        recover what a killed studio left, and sweeps stale files."""

    # ===================================================================== unsaved work
    def _job_marks(self) -> list[tuple[int, int]]:
        """(job id, step) of every job with a model: what a project saved now holds."""
        return [(job.id, job.step) for job in self.session.jobs if job.model is not None]

    def _dataset_key(self) -> tuple:
        return dataset_key(self.session.sources, self.session.preprocess)

    def unsaved_reasons(self) -> list[str]:
        """What quitting now would lose, one sentence each (empty: nothing)."""
        state = self.canvas_view.canvas.snapshot() if self.canvas_view is not None else None
        return self.unsaved.reasons(state, self.session.jobs, self._dataset_key(),
                                    project_open=self.project_path is not None)

    def autosave_now(self) -> bool:
        """Write the recovery project in a worker when something is unsaved and changed since
        the last one (the autosave timer calls this; the UI thread never waits on it). Returns
        whether a write was started."""
        if self._closing or self.canvas_view is None or self._autosave_inflight:
            return False
        reasons = self.unsaved_reasons()
        if not reasons:
            self._drop_stale_recovery()
            return False
        from studio.project import project_from_session

        canvas = self.canvas_view.canvas
        state = canvas.snapshot()
        fingerprint = self.unsaved.fingerprint(state, self.session.jobs, self._dataset_key())
        if fingerprint == self._autosaved and self.recovery.exists():
            return False
        try:
            path = self.recovery.claim()
        except OSError as exc:
            self._autosave_failed(exc)
            return False
        data = project_from_session(self.session, state, renderer=canvas.renderer)
        data.meta.update(recovery_meta(self.project_path, reasons))
        self._autosave_inflight = True
        run_in_background(write_recovery, path, data,
                          on_result=lambda out, fp=fingerprint: self._autosaved_to(out, fp),
                          on_error=self._autosave_failed)
        return True

    def _autosaved_to(self, path: Path, fingerprint: tuple) -> None:
        self._autosave_inflight = False
        self._autosaved = fingerprint
        self.last_autosave = Path(path)
        if not self._closing:
            self.statusBar().showMessage("Autosaved (for recovery after a crash)", 3000)
        self._drop_stale_recovery()

    def _autosave_failed(self, exc: BaseException) -> None:
        self._autosave_inflight = False
        if self._closing:
            return
        self.statusBar().showMessage(f"Autosave failed: {exc}", 10000)
        if not self._autosave_warned:  # once: not a box every few minutes
            self._autosave_warned = True
            self.show_error("Autosave failed", f"{exc}\n\nUntil you save your work, a crash would lose it.")

    def _drop_stale_recovery(self) -> None:
        """Everything is saved: a recovery file would only offer older work after a crash."""
        if not self._autosave_inflight and not self.unsaved_reasons():
            self.recovery.clear()
            self._autosaved = None

    def sweep_stale_files(self) -> None:
        """Remove, in a worker, the temporary files and folders saves killed outright left behind
        (``models.atomic.sweep_stale``: only ours, only of writers no longer running)."""
        from models.atomic import sweep_stale

        run_in_background(sweep_stale, on_result=self._swept)

    def _swept(self, removed: list) -> None:
        if removed and not self._closing:
            self.statusBar().showMessage(
                f"Removed {len(removed)} temporary file{'s' * (len(removed) != 1)} left by an interrupted save", 8000)

    def check_recovery(self) -> None:
        """Look (in a worker) for work a crashed studio autosaved; offered once the Canvas exists."""
        if self.recovery_offer or self.recovery_box is not None:
            return
        run_in_background(find_orphans, self.recovery.root, on_result=self._recovery_found)

    def _recovery_found(self, orphans: list[Orphan]) -> None:
        if self._closing or not orphans or self.recovery_offer:
            for orphan in orphans:
                orphan.release()
            return
        self.recovery_offer = list(orphans)
        if self.canvas_view is not None and self.recovery_box is None:
            self._offer_recovery()

    def _offer_recovery(self) -> None:
        """A non-modal question: the window works meanwhile, nothing waits on the answer."""
        newest = self.recovery_offer[0]
        more = len(self.recovery_offer) - 1
        text = (f"Harmonium did not quit properly last time. Work it autosaved on {newest.describe()} "
                "can be restored.")
        if more:
            text += (f"\n\n{more} older autosave{'s' if more != 1 else ''} of other sessions "
                     f"{'are' if more != 1 else 'is'} kept for the next start; Discard deletes them all.")
        box = QMessageBox(QMessageBox.Icon.Question, "Restore unsaved work?", text,
                          QMessageBox.StandardButton.NoButton, self)
        restore = box.addButton("Restore", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton("Not Now", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(restore)
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        roles = {QMessageBox.ButtonRole.AcceptRole: "restore", QMessageBox.ButtonRole.DestructiveRole: "discard"}
        box.buttonClicked.connect(lambda button, b=box: self.answer_recovery(roles.get(b.buttonRole(button), "later")))
        box.finished.connect(lambda _=0: self.answer_recovery("later"))  # closed without a choice
        self.recovery_box = box
        self._boxes.append(box)
        box.finished.connect(lambda _=0, b=box: self._boxes.remove(b) if b in self._boxes else None)
        box.show()

    def answer_recovery(self, choice: str) -> None:
        """``restore`` the newest crashed session (through the Open Project flow), ``discard``
        them all, or ``later`` (kept, offered at the next start)."""
        offer, self.recovery_offer = self.recovery_offer, []
        self.recovery_box = None
        if not offer:
            return
        if choice == "restore" and not self._closing and self.canvas_view is not None:
            for orphan in offer[1:]:
                orphan.release()
            self.open_project(offer[0].project, restoring=offer[0])
        elif choice == "discard":
            discard(offer)
            self.statusBar().showMessage("The autosaved work was discarded", 5000)
        else:
            for orphan in offer:
                orphan.release()
