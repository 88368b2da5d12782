#!/usr/bin/env python3
"""Harmonium: `python main.py` opens the studio; `python main.py train|sample|eval|scan ...` is the CLI."""
import sys

from studio.cli import main

if __name__ == "__main__":
    sys.exit(main())
