"""A small linearizability checker for KV register histories (Wing & Gong's search with Lowe's
memoisation), used by the cluster fault tests. No maintained Python package does this.

A history is a list of `Op`s, one per client call: when it was invoked and when it returned
(`ret = INF` when the outcome is unknown: a timeout, a connection lost), what it did and what it saw.
The history is linearizable when some total order of the operations (every completed one, and any
subset of the unknown ones) respects real time (an operation that returned before another was
invoked comes first) and replays correctly against a sequential register per key.

The model is the KV bucket's, key by key (keys are independent registers, P-compositionality):
  put(value)            -> revision r; the key now holds (value, r), r above the key's last revision
  get()                 -> (value, r), or None when the key has no value
  update(value, last)   -> revision r when the key's revision was `last` (compare-and-set); the
                           result FAILED when it was not
  create(value)         -> revision r when the key had no value; FAILED when it had one
An unknown outcome (`result=None` with `ret=INF`) may have happened, with any revision, or not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

INF = math.inf
FAILED = "failed"


@dataclass(frozen=True)
class Op:
    id: int
    key: str
    kind: str  # "put" | "get" | "update" | "create"
    call: float
    ret: float
    value: Any = None  # the value written (put, update, create)
    last: int = 0  # update: the expected revision
    result: Any = None  # revision (writes), (value, revision) or None (get), FAILED, None if unknown
    client: int = 0


@dataclass
class Result:
    ok: bool
    key: str = ""
    #: the longest linearizable prefix found for the failing key (for the report)
    best: list[Op] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.ok


# state of one register: None (no value) or (value, revision); revision None when it came from a
# write whose outcome was unknown
State = Any


def _step(state: State, op: Op) -> tuple[bool, State]:
    """Apply `op` to `state`: (allowed, next state)."""
    unknown = op.ret == INF and op.result is None
    have_rev = None if state is None else state[1]
    if op.kind == "get":
        if unknown:
            return True, state
        if op.result is None:
            return state is None, state
        if state is None:
            return False, state
        value, rev = op.result
        return (state[0] == value and (have_rev is None or have_rev == rev)), (value, rev)
    if op.kind == "put":
        return _write(state, op, unknown, have_rev)
    if op.kind in ("update", "create"):
        if op.kind == "create":
            matches = state is None
        else:
            matches = state is not None and (have_rev is None or have_rev == op.last)
        if op.result == FAILED:
            if op.kind == "update" and state is not None and have_rev is None:
                return True, state  # the revision is unknown: a mismatch is possible
            return (not matches), state
        if not matches:
            return False, state
        return _write(state, op, unknown, have_rev)
    raise ValueError(f"unknown op kind {op.kind!r}")


def _write(state: State, op: Op, unknown: bool, have_rev: int | None) -> tuple[bool, State]:
    """A write that took effect: the key holds its value at its revision (unknown when its
    outcome was), which must be above the key's last one."""
    if unknown:
        return True, (op.value, None)
    rev = op.result
    if have_rev is not None and rev <= have_rev:
        return False, state
    return True, (op.value, rev)


def check_key(ops: list[Op], initial: State = None, budget: int = 2_000_000) -> Result:
    """Is this one key's history linearizable? (depth-first search over the possible next
    operations, skipping states already explored)."""
    ops = sorted(ops, key=lambda o: o.call)
    n = len(ops)
    required = frozenset(i for i, o in enumerate(ops) if o.ret != INF)
    seen: set[tuple[frozenset[int], Any]] = set()
    best: list[int] = []
    steps = 0
    # explicit stack: (done set, state, order so far)
    stack: list[tuple[frozenset[int], State, tuple[int, ...]]] = [(frozenset(), initial, ())]
    while stack:
        done, state, order = stack.pop()
        if required <= done:
            return Result(True)
        if len(order) > len(best):
            best = list(order)
        steps += 1
        if steps > budget:
            raise RuntimeError("linearizability search budget exhausted")
        # an op may come next only if no pending op returned before it was invoked
        first_ret = min((ops[i].ret for i in range(n) if i not in done), default=INF)
        for i in range(n):
            if i in done:
                continue
            op = ops[i]
            if op.call > first_ret:
                break  # sorted by call: no later op qualifies either
            allowed, nxt = _step(state, op)
            if not allowed:
                continue
            key = (done | {i}, nxt)
            if key in seen:
                continue
            seen.add(key)
            stack.append((done | {i}, nxt, (*order, i)))
    return Result(False, ops[0].key if ops else "", [ops[i] for i in best])


def check(history: Iterable[Op], initial: dict[str, State] | None = None) -> Result:
    """Is the whole history linearizable? Checked key by key."""
    by_key: dict[str, list[Op]] = {}
    for op in history:
        by_key.setdefault(op.key, []).append(op)
    for key, ops in sorted(by_key.items()):
        result = check_key(ops, (initial or {}).get(key))
        if not result:
            result.key = key
            return result
    return Result(True)


class Recorder:
    """Collects a history from concurrent asyncio clients (times from one monotonic clock)."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.ops: list[Op] = []
        self._next = 0

    def begin(self) -> tuple[int, float]:
        self._next += 1
        return self._next, self.clock()

    def done(self, token: tuple[int, float], key: str, kind: str, result: Any, **fields: Any) -> None:
        op_id, call = token
        self.ops.append(Op(op_id, key, kind, call, self.clock(), result=result, **fields))

    def unknown(self, token: tuple[int, float], key: str, kind: str, **fields: Any) -> None:
        op_id, call = token
        self.ops.append(Op(op_id, key, kind, call, INF, result=None, **fields))


__all__ = ["FAILED", "INF", "Op", "Recorder", "Result", "check", "check_key"]
