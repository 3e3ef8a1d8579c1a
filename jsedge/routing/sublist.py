"""Subject matching and message delivery: the selector (layer 2). Import the sublist from here only.

Exports the twin chosen by `jsedge._ext.load("sublist")` — the compiled `jsedge._speedups.sublist`
unless JSEDGE_NO_EXTENSIONS is set (or it failed to import, which `_ext` records loudly) — under the
plain names, plus both twins explicitly: `py_impl` (always) and `c_impl` (None when not loaded), and
`SublistPy`/`SublistC` style aliases for tests and benchmarks. The choice is all-or-nothing with the
parser, because the compiled parser calls straight into the compiled `deliver()`.
"""

from __future__ import annotations

from types import ModuleType

from jsedge import _ext
from jsedge.routing import _sublist_py as py_impl

c_impl: ModuleType | None = _ext.load("sublist")

_impl: ModuleType = c_impl if c_impl is not None else py_impl

#: "c" or "py": the twin in use.
IMPLEMENTATION: str = "c" if c_impl is not None else "py"

ClientCore = _impl.ClientCore
Subscription = _impl.Subscription
SublistResult = _impl.SublistResult
Sublist = _impl.Sublist
deliver = _impl.deliver
deliver_to = _impl.deliver_to
flush_pending = _impl.flush_pending
CACHE_MAX: int = _impl.CACHE_MAX

ClientCorePy = py_impl.ClientCore
SubscriptionPy = py_impl.Subscription
SublistResultPy = py_impl.SublistResult
SublistPy = py_impl.Sublist
deliver_py = py_impl.deliver
deliver_to_py = py_impl.deliver_to
flush_pending_py = py_impl.flush_pending

ClientCoreC = c_impl.ClientCore if c_impl is not None else None
SubscriptionC = c_impl.Subscription if c_impl is not None else None
SublistResultC = c_impl.SublistResult if c_impl is not None else None
SublistC = c_impl.Sublist if c_impl is not None else None
deliver_c = c_impl.deliver if c_impl is not None else None
deliver_to_c = c_impl.deliver_to if c_impl is not None else None
flush_pending_c = c_impl.flush_pending if c_impl is not None else None

__all__ = [
    "CACHE_MAX",
    "IMPLEMENTATION",
    "ClientCore",
    "Subscription",
    "SublistResult",
    "Sublist",
    "deliver",
    "deliver_to",
    "flush_pending",
    "py_impl",
    "c_impl",
    "ClientCorePy",
    "SubscriptionPy",
    "SublistResultPy",
    "SublistPy",
    "deliver_py",
    "deliver_to_py",
    "flush_pending_py",
    "ClientCoreC",
    "SubscriptionC",
    "SublistResultC",
    "SublistC",
    "deliver_c",
    "deliver_to_c",
    "flush_pending_c",
]
