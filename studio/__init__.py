"""Harmonium studio: the application (plain logic modules here, Qt widgets under studio/ui)."""
