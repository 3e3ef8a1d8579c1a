"""Subject matching and message delivery: the selector (layer 2). Import the sublist from here only.

Exports the twin chosen by `jsedge._ext.load("sublist")` — the compiled `jsedge._speedups.sublist`
unless JSEDGE_NO_EXTENSIONS is set (or it failed to import, which `_ext` records loudly) — under the
plain names, plus both twins explicitly: `py_impl` and `c_impl` (None when not loaded), and
`SublistPy`/`SublistC` style aliases for tests and benchmarks. The choice is all-or-nothing with the
parser, because the compiled parser calls straight into the compiled `deliver()`.

When the compiled twin is in use, the pure-Python twin (`py_impl` and the `*Py` names) is imported on
first access (module `__getattr__`): the server never needs it, and compiling ~600 lines of source it
never runs cost ~3 ms of startup when no bytecode cache is available (PYTHONDONTWRITEBYTECODE).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from jsedge import _ext

c_impl: ModuleType | None = _ext.load("sublist")

if c_impl is None:
    from jsedge.routing import _sublist_py as py_impl

    _impl: ModuleType = py_impl
else:
    _impl = c_impl

#: "c" or "py": the twin in use.
IMPLEMENTATION: str = "c" if c_impl is not None else "py"

if TYPE_CHECKING:
    # Both twins have one interface, written down in the compiled twin's stub: type against it.
    from jsedge._speedups.sublist import (
        ClientCore,
        Sublist,
        SublistResult,
        Subscription,
        deliver,
        deliver_as,
        deliver_to,
        flush_pending,
    )
else:
    ClientCore = _impl.ClientCore
    Subscription = _impl.Subscription
    SublistResult = _impl.SublistResult
    Sublist = _impl.Sublist
    deliver = _impl.deliver
    deliver_to = _impl.deliver_to
    deliver_as = _impl.deliver_as
    flush_pending = _impl.flush_pending
CACHE_MAX: int = _impl.CACHE_MAX
KIND_CLIENT: int = _impl.KIND_CLIENT
KIND_ROUTER: int = _impl.KIND_ROUTER
KIND_LEAF: int = _impl.KIND_LEAF

_PY_NAMES = {
    "ClientCorePy": "ClientCore",
    "SubscriptionPy": "Subscription",
    "SublistResultPy": "SublistResult",
    "SublistPy": "Sublist",
    "deliver_py": "deliver",
    "deliver_to_py": "deliver_to",
    "deliver_as_py": "deliver_as",
    "flush_pending_py": "flush_pending",
}


def __getattr__(name: str) -> Any:
    """`py_impl` and the `*Py` aliases, imported on first use (see the module docstring)."""
    if name == "py_impl":
        return importlib.import_module("jsedge.routing._sublist_py")
    if name in _PY_NAMES:
        return getattr(importlib.import_module("jsedge.routing._sublist_py"), _PY_NAMES[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if c_impl is None:
    ClientCorePy = py_impl.ClientCore
    SubscriptionPy = py_impl.Subscription
    SublistResultPy = py_impl.SublistResult
    SublistPy = py_impl.Sublist
    deliver_py = py_impl.deliver
    deliver_to_py = py_impl.deliver_to
    deliver_as_py = py_impl.deliver_as
    flush_pending_py = py_impl.flush_pending

ClientCoreC = c_impl.ClientCore if c_impl is not None else None
SubscriptionC = c_impl.Subscription if c_impl is not None else None
SublistResultC = c_impl.SublistResult if c_impl is not None else None
SublistC = c_impl.Sublist if c_impl is not None else None
deliver_c = c_impl.deliver if c_impl is not None else None
deliver_to_c = c_impl.deliver_to if c_impl is not None else None
deliver_as_c = c_impl.deliver_as if c_impl is not None else None
flush_pending_c = c_impl.flush_pending if c_impl is not None else None

__all__ = [
    "CACHE_MAX",
    "KIND_CLIENT",
    "KIND_ROUTER",
    "KIND_LEAF",
    "IMPLEMENTATION",
    "ClientCore",
    "Subscription",
    "SublistResult",
    "Sublist",
    "deliver",
    "deliver_to",
    "deliver_as",
    "flush_pending",
    "py_impl",
    "c_impl",
    "ClientCorePy",
    "SubscriptionPy",
    "SublistResultPy",
    "SublistPy",
    "deliver_py",
    "deliver_to_py",
    "deliver_as_py",
    "flush_pending_py",
    "ClientCoreC",
    "SubscriptionC",
    "SublistResultC",
    "SublistC",
    "deliver_c",
    "deliver_to_c",
    "deliver_as_c",
    "flush_pending_c",
]
