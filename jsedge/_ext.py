"""The extension switch (layer 0).

`JSEDGE_NO_EXTENSIONS=1` forces the pure-Python twins everywhere. Otherwise every selector module loads
its compiled twin; the choice is all-or-nothing because the compiled parser calls straight into the
compiled sublist (the fused fast path), so a mixed pair cannot exist.

A compiled twin that fails to import without the switch set is recorded in `MISSING`; the server logs
it as an error at startup and `tests/conftest.py` fails the run. It is never silent.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

NO_EXTENSIONS: bool = os.environ.get("JSEDGE_NO_EXTENSIONS", "") not in ("", "0")

#: name -> "c" or "py": which twin each selector loaded.
LOADED: dict[str, str] = {}
#: name -> import error text, for compiled twins that should have loaded but did not.
MISSING: dict[str, str] = {}


def load(name: str) -> ModuleType | None:
    """Return the compiled module `jsedge._speedups.<name>`, or None when extensions are off or missing."""
    if NO_EXTENSIONS:
        LOADED[name] = "py"
        return None
    try:
        module = importlib.import_module(f"jsedge._speedups.{name}")
    except ImportError as exc:  # recorded, logged at startup, fails the test suite
        MISSING[name] = str(exc)
        LOADED[name] = "py"
        return None
    LOADED[name] = "c"
    return module


def describe() -> str:
    """One line for the startup log and /varz: which twin each hot path runs on."""
    if not LOADED:
        return "none loaded"
    return ", ".join(f"{name}={kind}" for name, kind in sorted(LOADED.items()))
