"""Harmonium's models: pure PyTorch, usable headless. Never imports Qt or `studio`."""
