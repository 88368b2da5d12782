"""Shared test set-up: Qt runs without a display, and nothing a test saves lands in the
developer's own data folder (recovery files, autosaves, the journal of saves in flight)."""
import atexit
import os
import shutil
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
_DATA = tempfile.mkdtemp(prefix="harmonium-tests-data-")
os.environ["XDG_DATA_HOME"] = _DATA
atexit.register(shutil.rmtree, _DATA, ignore_errors=True)
