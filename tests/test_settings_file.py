"""A settings file is read from disk like any other file: whatever it holds, the window opens
with its defaults where a value is unusable, and nothing raises (issue 13)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from studio.dataset import Preprocess
from studio.jobs import Session

DEEP = "[" * 100_000 + "]" * 100_000
HOSTILE_VALUES = ["a, b, c", "@ByteArray(\\x00\\xff)", "@Variant(\\0\\0\\0\\x7f\\0\\0\\0\\x12QTextCharFormat)",
                  DEEP, json.dumps([1, 2, 3]), json.dumps("text"), json.dumps({"size": "huge", "crop": ["x"]}),
                  json.dumps({"size": 10**30}), "nan", "-1e309", "\x00\x01", "x" * 100_000]
KEYS = ["window/geometry", "window/state", "window/tab", "dataset/preprocess", "dataset/recent",
        "dataset/last_dir", "models/last_dir", "projects/last_dir", "training/kind",
        "training/params/rbm", "training/params/vae", "autosave/minutes"]


@pytest.mark.parametrize("shift", range(0, len(HOSTILE_VALUES), 3))
def test_a_hostile_settings_file_opens_the_window_with_defaults(qtbot, tmp_path, monkeypatch, shift):
    """Every key holds a hostile value; four files rotate the values so each key meets four."""
    from studio.app import make_application
    from studio.ui.main_window import MainWindow
    from studio.ui.settings import setting_folder, setting_json, setting_text

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    ini = tmp_path / "settings.ini"
    lines = (f"{k}={HOSTILE_VALUES[(i + shift) % len(HOSTILE_VALUES)]}\n" for i, k in enumerate(KEYS))
    ini.write_text("[General]\n" + "".join(lines), encoding="utf-8")
    make_application()
    settings = QSettings(str(ini), QSettings.Format.IniFormat)
    w = MainWindow(Session(Preprocess(size=28)), settings=settings)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.start_engine()  # the training pages read their settings when the engine is in
    qtbot.waitUntil(lambda: w.is_ready, timeout=60_000)
    assert w.training_panel.current_kind in w.training_panel.pages
    assert isinstance(w.session.preprocess, Preprocess) and 8 <= w.session.preprocess.size <= 512
    assert all(isinstance(f, str) for f in w.recent_folders())
    for key in ("dataset/last_dir", "models/last_dir", "projects/last_dir"):
        assert Path(setting_folder(settings, key)).is_dir()
    w.save_settings()  # and what it writes back is usable again
    again = QSettings(str(ini), QSettings.Format.IniFormat)
    assert setting_json(again, "dataset/preprocess", None, dict) == w.session.preprocess.to_dict()
    assert setting_text(again, "training/kind") in w.training_panel.pages
