"""Unit tests of jsedge.routing.account: the one subscribe/unsubscribe point and its interest events."""

from __future__ import annotations

import pytest

from jsedge.routing.account import Account
from jsedge.routing.sublist import KIND_CLIENT, KIND_ROUTER, ClientCore, Subscription


def core(kind: int = KIND_CLIENT) -> ClientCore:
    c = ClientCore()
    c.kind = kind
    return c


def test_local_interest_counts_and_events() -> None:
    account = Account("A")
    events: list[tuple] = []
    account.add_interest_listener(
        lambda acc, subject, queue, count, delta: events.append((subject, queue, count, delta))
    )
    client = core()
    a1 = Subscription(client, b"foo.*", b"1")
    a2 = Subscription(client, b"foo.*", b"2")
    q1 = Subscription(client, b"bar", b"3", b"q")
    internal = Subscription(None, b"baz", b"", None, 0, lambda *args: None)
    for sub in (a1, a2, q1, internal):
        account.subscribe(sub)
    assert account.interest == {(b"foo.*", None): 2, (b"bar", b"q"): 1, (b"baz", None): 1}
    assert account.unsubscribe(a1) and a1.closed
    assert not account.unsubscribe(a1)  # twice: nothing announced
    account.unsubscribe(a2)
    assert (b"foo.*", None) not in account.interest
    assert events == [
        (b"foo.*", None, 1, 1),
        (b"foo.*", None, 2, 1),
        (b"bar", b"q", 1, 1),
        (b"baz", None, 1, 1),
        (b"foo.*", None, 1, -1),
        (b"foo.*", None, 0, -1),
    ]
    assert account.sublist.has_interest(b"bar") and not account.sublist.has_interest(b"foo.x")


def test_remote_subscriptions_are_not_local_interest() -> None:
    account = Account("A")
    events: list[tuple] = []
    account.add_interest_listener(lambda acc, subject, queue, count, delta: events.append((subject, count, delta)))
    remote = Subscription(core(KIND_ROUTER), b"foo", b"r1")
    account.subscribe(remote)
    assert account.interest == {} and account.sublist.has_interest(b"foo")
    account.unsubscribe(remote)
    assert events == [(b"foo", -1, 1), (b"foo", -1, -1)]


def test_invalid_subject_changes_nothing() -> None:
    account = Account("A")
    events: list[tuple] = []
    account.add_interest_listener(lambda *args: events.append(args))
    with pytest.raises(ValueError):
        account.subscribe(Subscription(core(), b"a..b", b"1"))
    assert account.interest == {} and events == []


def test_listener_removal() -> None:
    account = Account("A")
    seen: list[int] = []

    def listener(*args) -> None:
        seen.append(1)

    account.add_interest_listener(listener)
    account.remove_interest_listener(listener)
    account.remove_interest_listener(listener)  # harmless twice
    account.subscribe(Subscription(core(), b"x", b"1"))
    assert seen == []


def test_unrouted_internal_subscriptions_are_not_announced() -> None:
    account = Account("A")
    events: list[tuple] = []
    account.add_interest_listener(lambda *args: events.append(args))
    sub = Subscription(None, b"$JS.API.>", b"", None, 0, lambda *args: None)
    account.subscribe(sub, routed=False)
    assert account.sublist.has_interest(b"$JS.API.INFO") and account.interest == {}
    assert account.unsubscribe(sub) and events == [] and account.unrouted == set()
