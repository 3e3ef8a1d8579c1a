"""Client-protocol parser: the selector (layer 1). Import the parser from here only.

Exports `Parser`, the twin chosen by `jsedge._ext.load("parser")` — the compiled
`jsedge._speedups.parser` unless JSEDGE_NO_EXTENSIONS is set (or it failed to import, which `_ext`
records loudly) — plus both twins as modules: `py_impl` (always) and `c_impl` (None when not
loaded), and `ParserPy` / `ParserC` for tests and benchmarks. The compiled parser cimports the
compiled sublist's `deliver()`, so the choice is all-or-nothing with `jsedge.routing.sublist`.
The contract (handler calls, framing rules) is the docstring of `_parser_py.py`.
"""

from __future__ import annotations

from types import ModuleType

from jsedge import _ext
from jsedge.protocol import _parser_py as py_impl

c_impl: ModuleType | None = _ext.load("parser")

#: "c" or "py": the twin in use.
IMPLEMENTATION: str = "c" if c_impl is not None else "py"

ParserPy = py_impl.Parser
ParserC = c_impl.Parser if c_impl is not None else None
Parser = ParserC if ParserC is not None else ParserPy

__all__ = ["IMPLEMENTATION", "Parser", "ParserC", "ParserPy", "c_impl", "py_impl"]
