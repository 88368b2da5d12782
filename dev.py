#!/usr/bin/env python3
"""Bootstrap and run Harmonium with nothing but Python >= 3.11.

    python3 dev.py studio [ARGS...]   # create .venv if needed, install, open the studio
    python3 dev.py test [PYTEST ARGS] # create .venv if needed, install, run the whole test suite
    python3 dev.py bench NAME [ARGS]  # run bench/NAME.py inside the environment
    python3 dev.py cli [ARGS...]      # the `harmonium` command line inside the environment

The environment lives in `.venv/` beside this file. PyTorch is installed only when the
environment has none: then the CPU build `torch==2.13.0` is taken (install a CUDA build
yourself first, `.venv/bin/pip install torch --index-url ...`, and it is kept).
Re-installs happen only when pyproject.toml changes.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".harmonium-installed"
TORCH_PIN = "torch==2.13.0"


def _python() -> Path:
    scripts = "Scripts" if os.name == "nt" else "bin"
    exe = "python.exe" if os.name == "nt" else "python"
    return VENV / scripts / exe


def _run(*args: str | os.PathLike, env: dict | None = None) -> int:
    return subprocess.call([str(a) for a in args], cwd=ROOT, env=env)


def _check(*args: str | os.PathLike) -> None:
    rc = _run(*args)
    if rc != 0:
        sys.exit(f"dev.py: command failed ({rc}): {' '.join(map(str, args))}")


def ensure_env() -> Path:
    if sys.version_info < (3, 11):
        sys.exit("Harmonium needs Python 3.11 or newer.")
    py = _python()
    if not py.exists():
        print("dev.py: creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == want:
        return py
    quiet = ["-q"] if os.environ.get("CI") else []
    has_torch = subprocess.call([str(py), "-c", "import torch"], cwd=ROOT, stderr=subprocess.DEVNULL) == 0  # quietly
    if not has_torch:
        print(f"dev.py: installing {TORCH_PIN} (CPU build) ...", flush=True)
        _check(py, "-m", "pip", "install", *quiet, TORCH_PIN)
    print("dev.py: installing harmonium-studio and its test tools ...", flush=True)
    _check(py, "-m", "pip", "install", *quiet, "-e", ".[test]")
    STAMP.write_text(want)
    return py


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(__doc__)
        return 0
    cmd, rest = argv[0], argv[1:]
    py = ensure_env()
    env = dict(os.environ)
    if cmd == "studio":
        return _run(py, "main.py", *rest, env=env)
    if cmd == "test":
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
        return _run(py, "-m", "pytest", *rest, env=env)
    if cmd == "bench":
        if not rest:
            sys.exit("dev.py bench NAME [ARGS]: NAME is a file in bench/ without .py")
        return _run(py, f"bench/{rest[0]}.py", *rest[1:], env=env)
    if cmd == "cli":
        return _run(py, "main.py", *rest, env=env)
    sys.exit(f"dev.py: unknown command {cmd!r} (studio, test, bench, cli)")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
