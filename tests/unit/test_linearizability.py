"""The KV linearizability checker (tests/linearizability.py) on hand-made histories: correct ones
pass, and each classic anomaly is flagged."""

from __future__ import annotations

import random

import pytest
from linearizability import FAILED, INF, Op, check, check_key

pytestmark = pytest.mark.timeout(60)


def op(i, kind, call, ret, *, key="k", value=None, last=0, result=None):
    return Op(i, key, kind, call, ret, value=value, last=last, result=result)


def test_sequential_history_passes():
    h = [
        op(1, "put", 0, 1, value="a", result=1),
        op(2, "get", 2, 3, result=("a", 1)),
        op(3, "update", 4, 5, value="b", last=1, result=2),
        op(4, "get", 6, 7, result=("b", 2)),
        op(5, "update", 8, 9, value="c", last=1, result=FAILED),
    ]
    assert check(h)


def test_stale_read_after_a_completed_write_is_flagged():
    h = [
        op(1, "put", 0, 1, value="a", result=1),
        op(2, "put", 2, 3, value="b", result=2),
        op(3, "get", 4, 5, result=("a", 1)),  # b was acknowledged before this read began
    ]
    result = check(h)
    assert not result and result.key == "k"


def test_concurrent_read_may_see_either_value():
    h = [
        op(1, "put", 0, 1, value="a", result=1),
        op(2, "put", 2, 6, value="b", result=2),
        op(3, "get", 3, 4, result=("a", 1)),
        op(4, "get", 5, 7, result=("b", 2)),
    ]
    assert check(h)


def test_lost_update_is_flagged():
    """Two compare-and-sets against the same revision cannot both succeed."""
    h = [
        op(1, "put", 0, 1, value="a", result=1),
        op(2, "update", 2, 5, value="x", last=1, result=2),
        op(3, "update", 3, 6, value="y", last=1, result=3),
    ]
    assert not check(h)


def test_read_of_a_value_never_written_is_flagged():
    h = [op(1, "put", 0, 1, value="a", result=1), op(2, "get", 2, 3, result=("z", 1))]
    assert not check(h)


def test_reads_going_back_in_time_are_flagged():
    h = [
        op(1, "put", 0, 1, value="a", result=1),
        op(2, "put", 2, 10, value="b", result=2),  # concurrent with both reads
        op(3, "get", 3, 4, result=("b", 2)),
        op(4, "get", 5, 6, result=("a", 1)),  # after a read that saw b: too late to see a
    ]
    assert not check(h)


def test_an_acknowledged_write_that_vanished_is_flagged():
    h = [op(1, "put", 0, 1, value="a", result=1), op(2, "get", 2, 3, result=None)]
    assert not check(h)


def test_unknown_outcomes_may_or_may_not_have_happened():
    took_effect = [
        op(1, "put", 0, 1, value="a", result=1),
        op(2, "put", 2, INF, value="b"),  # timed out
        op(3, "get", 5, 6, result=("b", 2)),
    ]
    assert check(took_effect)
    did_not = [
        op(1, "put", 0, 1, value="a", result=1),
        op(2, "put", 2, INF, value="b"),
        op(3, "get", 5, 6, result=("a", 1)),
    ]
    assert check(did_not)
    # ...but not both at once: seen, then gone again
    flip = [*did_not[:2], op(3, "get", 5, 6, result=("b", 2)), op(4, "get", 7, 8, result=("a", 1))]
    assert not check(flip)


def test_create_only_on_an_empty_key():
    ok = [op(1, "create", 0, 1, value="a", result=1), op(2, "create", 2, 3, value="b", result=FAILED)]
    assert check(ok)
    both = [op(1, "create", 0, 1, value="a", result=1), op(2, "create", 2, 3, value="b", result=2)]
    assert not check(both)


def test_revisions_must_grow_per_key():
    h = [op(1, "put", 0, 1, value="a", result=5), op(2, "put", 2, 3, value="b", result=4)]
    assert not check(h)


def test_keys_are_independent():
    h = [
        op(1, "put", 0, 1, key="x", value="a", result=1),
        op(2, "put", 2, 3, key="y", value="b", result=2),
        op(3, "get", 4, 5, key="x", result=("a", 1)),
        op(4, "get", 6, 7, key="y", result=None),  # y was written: flagged on key y
    ]
    result = check(h)
    assert not result and result.key == "y"


def test_random_sequential_histories_pass_and_a_corrupted_read_fails():
    rng = random.Random(7)
    for _ in range(50):
        state = None
        rev = 0
        t = 0.0
        h = []
        for i in range(30):
            kind = rng.choice(["put", "get", "update"])
            if kind == "put":
                rev += 1
                state = (f"v{i}", rev)
                h.append(op(i, "put", t, t + 1, value=f"v{i}", result=rev))
            elif kind == "get":
                h.append(op(i, "get", t, t + 1, result=state))
            else:
                last = state[1] if state and rng.random() < 0.7 else 999
                if state and last == state[1]:
                    rev += 1
                    state = (f"v{i}", rev)
                    h.append(op(i, "update", t, t + 1, value=f"v{i}", last=last, result=rev))
                else:
                    h.append(op(i, "update", t, t + 1, value=f"v{i}", last=last, result=FAILED))
            t += 2
        assert check_key(h)
        reads = [o for o in h if o.kind == "get" and o.result is not None]
        writes = [o for o in h if o.kind in ("put", "update") and o.result != FAILED]
        if reads and len(writes) > 1:
            bad = reads[-1]
            wrong = next(w for w in writes if (w.value, w.result) != bad.result)
            corrupted = [
                o if o is not bad else Op(o.id, o.key, o.kind, o.call, o.ret, result=(wrong.value, wrong.result))
                for o in h
            ]
            assert not check_key(corrupted)
