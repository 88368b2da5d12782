"""The studio's main window, one module per part:

* ``window``   — :class:`MainWindow` itself: actions and menus, start-up, tabs, settings, quitting;
* ``engine``   — :func:`load_engine`, torch and the model kinds imported in a worker at start-up;
* ``images``   — opening and loading images, recent folders;
* ``tabs``     — the wiring between the training dock and the Dreams, Canvas and Latent tabs;
* ``files``    — models and projects saved and opened in the background;
* ``recovery`` — autosave, recovery of a killed studio's work, sweeping stale files.
"""

from studio.ui.main_window.engine import load_engine
from studio.ui.main_window.window import MainWindow

__all__ = ["MainWindow", "load_engine"]
