"""Qt widgets: they show and drive the plain logic in `studio`, nothing more."""
