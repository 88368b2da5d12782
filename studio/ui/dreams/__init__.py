"""The Dreams tab (a view of :class:`studio.dreams.DreamSession`), one module per part:

* ``view``     — :class:`DreamsView` itself: its public slots, snapshots and exports, the session
  and the display;
* ``build``    — its widgets (the mosaic, the controls column, the scrubber, shortcuts);
* ``controls`` — what the controls, clicks on the mosaic and brush strokes do;
* ``widgets``  — colours and timings, the mosaic image item, small helpers.
"""

from studio.ui.dreams.view import DreamsView

__all__ = ["DreamsView"]
