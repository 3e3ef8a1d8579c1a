"""Client-protocol parser: the selector (layer 1). Import the parser from here only.

Exports `Parser`, the twin chosen by `jsedge._ext.load("parser")` — the compiled
`jsedge._speedups.parser` unless JSEDGE_NO_EXTENSIONS is set (or it failed to import, which `_ext`
records loudly) — plus both twins as modules: `py_impl` and `c_impl` (None when not loaded), and
`ParserPy` / `ParserC` for tests and benchmarks. With the compiled twin in use, `py_impl` and
`ParserPy` are imported on first access (module `__getattr__`), so the server does not compile the
reference twin's source at startup. The compiled parser cimports the
compiled sublist's `deliver()`, so the choice is all-or-nothing with `jsedge.routing.sublist`.
The contract (handler calls, framing rules) is the docstring of `_parser_py.py`.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from jsedge import _ext

c_impl: ModuleType | None = _ext.load("parser")

#: "c" or "py": the twin in use.
IMPLEMENTATION: str = "c" if c_impl is not None else "py"

ParserC = c_impl.Parser if c_impl is not None else None
if c_impl is None:
    from jsedge.protocol import _parser_py as py_impl

    ParserPy = py_impl.Parser
Parser = ParserC if ParserC is not None else ParserPy


def __getattr__(name: str) -> Any:
    """`py_impl` and `ParserPy`, imported on first use (see the module docstring)."""
    if name == "py_impl":
        return importlib.import_module("jsedge.protocol._parser_py")
    if name == "ParserPy":
        return importlib.import_module("jsedge.protocol._parser_py").Parser
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["IMPLEMENTATION", "Parser", "ParserC", "ParserPy", "c_impl", "py_impl"]
