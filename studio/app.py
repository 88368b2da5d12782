"""Starting the studio (the window itself lives in studio/ui)."""
from __future__ import annotations

import argparse
import sys


def run_studio(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="harmonium", description="Open the Harmonium studio.")
    p.add_argument("folder", nargs="?", help="folder of images to open (default: the demo set)")
    p.add_argument("--train", metavar="MODEL", help="start training MODEL at once (rbm, grbm, ae, vae, hybrid)")
    args = p.parse_args(argv)
    from PySide6.QtWidgets import QApplication, QLabel

    app = QApplication.instance() or QApplication(sys.argv[:1])
    label = QLabel("Harmonium studio")
    label.resize(480, 320)
    label.show()
    return app.exec()
