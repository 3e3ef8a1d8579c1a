"""Unit tests of jsedge.routing.sublist, run on both twins (the `impl` fixture), and jsedge.subjects."""

from __future__ import annotations

import importlib
import os
from collections import Counter
from types import ModuleType
from typing import Any

import pytest

from jsedge import subjects
from jsedge.routing import _sublist_py
from jsedge.routing import sublist as selector


@pytest.fixture(params=["py", "c"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    if request.param == "py":
        return _sublist_py
    if os.environ.get("JSEDGE_NO_EXTENSIONS", "") not in ("", "0"):
        pytest.skip("JSEDGE_NO_EXTENSIONS is set")
    try:
        return importlib.import_module("jsedge._speedups.sublist")
    except ImportError as exc:  # a missing compiled twin is a failure, never a skip
        pytest.fail(f"compiled sublist twin not importable: {exc}")


# -- helpers --------------------------------------------------------------------------------------


def sids(result: Any) -> set[bytes]:
    return {sub.sid for sub in result.psubs}


def groups(result: Any) -> list[set[bytes]]:
    return sorted(({sub.sid for sub in group} for group in result.qsubs), key=sorted)


def make(impl: ModuleType, **fields: Any) -> Any:
    core = impl.ClientCore()
    for name, value in fields.items():
        setattr(core, name, value)
    return core


class Recorder:
    """Mixin recording hook calls; combined with either twin's ClientCore."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[Any, ...]] = []
        self.flushed: list[bytes] = []

    def flush(self) -> None:
        self.flushed.append(bytes(self.outbuf))  # type: ignore[attr-defined]
        self.outbuf = bytearray()

    def on_slow_consumer(self) -> None:
        self.events.append(("slow",))

    def on_auto_unsub(self, sub: Any) -> None:
        self.events.append(("auto_unsub", sub.sid, sub.closed))

    def on_no_responders(self, subject: bytes, reply: bytes) -> None:
        self.events.append(("no_responders", subject, reply))

    def on_reply_delivered(self, reply: bytes) -> None:
        self.events.append(("reply", reply))


def recorder(impl: ModuleType, sublist: Any = None, **fields: Any) -> Any:
    cls = type("Client", (Recorder, impl.ClientCore), {})
    core = cls()
    core.sublist = sublist
    for name, value in fields.items():
        setattr(core, name, value)
    return core


# -- jsedge.subjects ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject", [b">", b"*", b"foo.*bar", b"foo.bar>", b"*.*", b"foo.>", b"f\xc3\xb6\xc3\xb6", b"a.*.c.>"]
)
def test_valid_subject(subject: bytes) -> None:
    assert subjects.valid_subject(subject)


@pytest.mark.parametrize(
    "subject",
    [b"", b"foo..bar", b"foo.", b".foo", b"foo.>.bar", b">.a", b"fo o", b"a\tb", b"a\rb", b"a\nb", b"a\fb"] + [b"."],
)
def test_invalid_subject(subject: bytes) -> None:
    assert not subjects.valid_subject(subject)


def test_sublist_and_pedantic_subject_rules() -> None:
    """nats-server's Sublist.Insert rule (SUB) and IsValidLiteralSubject (pedantic PUB) check tokens
    only: control bytes inside a token are accepted."""
    for subject in (b"a\x0cb", b"a.\rb", b"a.\x01", b"*.x.>", b">"):
        assert subjects.valid_sublist_subject(subject)
    for subject in (b"", b"a..b", b"a.>.b", b".a"):
        assert not subjects.valid_sublist_subject(subject)
    for subject in (b"a\x0cb", b"a.\rb", b"a.\x01", b"a.b*"):
        assert subjects.valid_pedantic_publish_subject(subject)
    for subject in (b"", b"a..b", b"a.*", b">", b"a.>"):
        assert not subjects.valid_pedantic_publish_subject(subject)


def test_valid_literal_subject() -> None:
    assert subjects.valid_literal_subject(b"foo.bar")
    assert subjects.valid_literal_subject(b"foo.*bar.baz>")
    assert not subjects.valid_literal_subject(b"foo.*")
    assert not subjects.valid_literal_subject(b"foo.>")
    assert not subjects.valid_literal_subject(b"foo..bar")
    assert not subjects.valid_literal_subject(b"foo bar")


def test_tokens_count() -> None:
    assert subjects.tokens_count(b"") == 0
    assert subjects.tokens_count(b"a") == 1
    assert subjects.tokens_count(b"a.b.>") == 3


@pytest.mark.parametrize(
    ("filter_subject", "subject", "expected"),
    [
        (b"foo", b"foo", True),
        (b"foo", b"foo.bar", False),
        (b"foo.*", b"foo.bar", True),
        (b"foo.*", b"foo", False),
        (b"foo.*", b"foo.bar.baz", False),
        (b"foo.>", b"foo.bar.baz", True),
        (b"foo.>", b"foo", False),
        (b">", b"foo", True),
        (b"*.bar", b"foo.bar", True),
        (b"foo.*bar", b"foo.xbar", False),
        (b"foo.*bar", b"foo.*bar", True),
        (b"foo.*", b"foo.>", True),  # non-pedantic PUB foo.> reaches SUB foo.* (§8.3)
        (b"foo.*", b"foo.*", True),
        (b"foo.bar", b"foo.*", False),
        (b"foo.*", b"foo..bar", False),
        (b">", b"foo.", False),
        (b">", b"", False),
    ],
)
def test_subject_matches(filter_subject: bytes, subject: bytes, expected: bool) -> None:
    assert subjects.subject_matches(filter_subject, subject) is expected


@pytest.mark.parametrize(
    ("a", "b", "subset", "overlap"),
    [
        (b"foo.bar", b"foo.*", True, True),
        (b"foo.*", b"foo.>", True, True),
        (b"foo.>", b">", True, True),
        (b"foo.>", b"foo.*", False, True),
        (b"foo.*", b"foo.bar", False, True),
        (b"foo.*", b"*.bar", False, True),
        (b"foo.bar", b"foo.baz", False, False),
        (b"foo", b"foo.>", False, False),
        (b"foo.>", b"foo", False, False),
        (b"a.*.c", b"a.b.*", False, True),
        (b"*", b">", True, True),
        (b">", b"*", False, True),
        (b"foo.bar", b"foo.bar", True, True),
        (b"a.b", b"a.b.c", False, False),
    ],
)
def test_subset_and_overlap(a: bytes, b: bytes, subset: bool, overlap: bool) -> None:
    assert subjects.subject_is_subset(a, b) is subset
    assert subjects.subjects_overlap(a, b) is overlap
    assert subjects.subjects_overlap(b, a) is overlap


# -- selector -------------------------------------------------------------------------------------


def test_selector_exports() -> None:
    assert selector.py_impl is _sublist_py
    for name in ("ClientCore", "Subscription", "SublistResult", "Sublist", "deliver", "flush_pending"):
        assert getattr(selector, name) is getattr(selector._impl, name)
    assert selector.SublistPy is _sublist_py.Sublist
    if os.environ.get("JSEDGE_NO_EXTENSIONS", "") in ("", "0"):
        assert selector.c_impl is not None
        assert selector.IMPLEMENTATION == "c"
        assert selector.SublistC is selector.c_impl.Sublist
    else:
        assert selector.c_impl is None
        assert selector.SublistC is None


# -- data types -----------------------------------------------------------------------------------


def test_client_core_defaults(impl: ModuleType) -> None:
    core = impl.ClientCore()
    assert core.outbuf == bytearray() and isinstance(core.outbuf, bytearray)
    assert core.flush_scheduled is False
    assert core.pending == []
    assert core.sublist is None
    assert (core.headers, core.echo, core.no_responders, core.fast_pub) == (False, True, False, False)
    assert (core.track_replies, core.closed) == (False, False)
    assert core.deny_filter is None
    assert core.kind == impl.KIND_CLIENT == 0 and (impl.KIND_ROUTER, impl.KIND_LEAF) == (1, 2)
    assert core.max_payload == 1048576
    assert core.max_pending == 67108864
    assert (core.in_msgs, core.in_bytes, core.out_msgs, core.out_bytes) == (0, 0, 0, 0)
    # default hooks are safe no-ops; flush drops the buffer
    core.outbuf += b"x"
    core.flush()
    assert core.outbuf == bytearray()
    core.on_slow_consumer()
    core.on_auto_unsub(None)
    core.on_no_responders(b"a", b"b")
    core.on_reply_delivered(b"b")


def test_client_core_subclass_attributes(impl: ModuleType) -> None:
    core = recorder(impl)
    core.anything = 1  # the server's subclass keeps its own attributes
    assert core.anything == 1


def test_subscription_fields(impl: ModuleType) -> None:
    core = impl.ClientCore()
    sub = impl.Subscription(core, b"foo", b"7", b"q", 3)
    assert (sub.client, sub.subject, sub.sid, sub.queue, sub.max_msgs) == (core, b"foo", b"7", b"q", 3)
    assert (sub.delivered, sub.internal, sub.closed) == (0, None, False)
    sub2 = impl.Subscription(None, b"bar", b"1", internal=print)
    assert sub2.client is None and sub2.internal is print and sub2.queue is None
    assert "foo" in repr(sub)


# -- matching -------------------------------------------------------------------------------------


def build(impl: ModuleType, specs: list[tuple[bytes, bytes, bytes | None]], cache: bool = True) -> Any:
    sublist = impl.Sublist(cache=cache)
    core = impl.ClientCore()
    for subject, sid, queue in specs:
        sublist.insert(impl.Subscription(core, subject, sid, queue))
    return sublist


@pytest.mark.parametrize("cache", [True, False])
def test_match_literal_and_wildcards(impl: ModuleType, cache: bool) -> None:
    sublist = build(
        impl,
        [
            (b"foo.bar", b"1", None),
            (b"foo.*", b"2", None),
            (b"foo.>", b"3", None),
            (b">", b"4", None),
            (b"*.bar", b"5", None),
            (b"foo", b"6", None),
            (b"foo.bar.baz", b"7", None),
            (b"*.*.baz", b"8", None),
        ],
        cache,
    )
    for _ in range(2):  # second round comes from the cache when enabled
        assert sids(sublist.match(b"foo.bar")) == {b"1", b"2", b"3", b"4", b"5"}
        assert sids(sublist.match(b"foo")) == {b"4", b"6"}
        assert sids(sublist.match(b"foo.bar.baz")) == {b"3", b"4", b"7", b"8"}
        assert sids(sublist.match(b"bar")) == {b"4"}
        assert sids(sublist.match(b"x.bar")) == {b"4", b"5"}
    assert sublist.count == 8 and len(sublist) == 8


def test_match_embedded_wildcards_are_literal(impl: ModuleType) -> None:
    sublist = build(impl, [(b"foo.*bar", b"1", None), (b"foo.bar>", b"2", None), (b"foo.*", b"3", None)])
    assert sids(sublist.match(b"foo.*bar")) == {b"1", b"3"}
    assert sids(sublist.match(b"foo.bar>")) == {b"2", b"3"}
    assert sids(sublist.match(b"foo.xbar")) == {b"3"}
    assert sids(sublist.match(b"foo.bar")) == {b"3"}


def test_match_wildcard_publish_subjects(impl: ModuleType) -> None:
    # non-pedantic PUB with wildcard tokens is routed by plain token matching (§8.3)
    sublist = build(impl, [(b"foo.*", b"1", None), (b"foo.bar", b"2", None), (b"foo.>", b"3", None)])
    assert sids(sublist.match(b"foo.*")) == {b"1", b"3"}
    assert sids(sublist.match(b"foo.>")) == {b"1", b"3"}


def test_match_utf8(impl: ModuleType) -> None:
    sublist = build(impl, [("föö.*".encode(), b"1", None), ("föö.bär".encode(), b"2", None)])
    assert sids(sublist.match("föö.bär".encode())) == {b"1", b"2"}
    assert sids(sublist.match(b"foo.bar")) == set()


@pytest.mark.parametrize("subject", [b"", b"foo..bar", b".foo", b"foo.", b"."])
def test_match_empty_tokens_match_nothing(impl: ModuleType, subject: bytes) -> None:
    sublist = build(impl, [(b">", b"1", None), (b"foo.*", b"2", None)])
    result = sublist.match(subject)
    assert result.psubs == [] and result.qsubs == []
    assert not sublist.has_interest(subject)
    assert sublist.statistics()["num_cache"] == 0


@pytest.mark.parametrize("subject", [b"", b"foo..bar", b"foo.>.bar", b".x", b"x.", b">.>"])
def test_insert_invalid_subject_raises(impl: ModuleType, subject: bytes) -> None:
    sublist = impl.Sublist()
    with pytest.raises(ValueError):
        sublist.insert(impl.Subscription(None, subject, b"1"))
    assert sublist.count == 0


def test_queue_groups_merge_across_nodes(impl: ModuleType) -> None:
    sublist = build(
        impl,
        [
            (b"foo.*", b"1", b"q1"),
            (b">", b"2", b"q1"),
            (b"foo.bar", b"3", b"q2"),
            (b"foo.bar", b"4", b"q2"),
            (b"foo.bar", b"5", None),
            (b"foo.>", b"6", b"q3"),
        ],
    )
    result = sublist.match(b"foo.bar")
    assert sids(result) == {b"5"}
    assert groups(result) == sorted([{b"1", b"2"}, {b"3", b"4"}, {b"6"}], key=sorted)
    assert groups(sublist.match(b"baz")) == [{b"2"}]


def test_remove(impl: ModuleType) -> None:
    sublist = impl.Sublist()
    core = impl.ClientCore()
    a = impl.Subscription(core, b"foo.*", b"1")
    b = impl.Subscription(core, b"foo.*", b"2")
    q = impl.Subscription(core, b"foo.>", b"3", b"q")
    for sub in (a, b, q):
        sublist.insert(sub)
    assert sublist.remove(a) is True
    assert sublist.remove(a) is False
    assert sids(sublist.match(b"foo.x")) == {b"2"}
    assert sublist.remove(q) is True
    assert sublist.match(b"foo.x").qsubs == []
    # same subject, not inserted: removal by identity
    assert sublist.remove(impl.Subscription(core, b"foo.*", b"2")) is False
    assert sublist.remove(impl.Subscription(core, b"nope.x", b"9")) is False
    assert sublist.remove(impl.Subscription(core, b"foo..x", b"9")) is False
    assert sublist.remove(b) is True
    assert sublist.count == 0
    assert list(sublist.subscriptions()) == []
    st = sublist.statistics()
    assert (st["num_inserts"], st["num_removes"], st["num_subscriptions"]) == (3, 3, 0)


def test_subscriptions_iterator(impl: ModuleType) -> None:
    specs = [(b"a", b"1", None), (b"a.*", b"2", b"q"), (b"a.>", b"3", None), (b">", b"4", b"q")]
    sublist = build(impl, specs)
    assert sorted(sub.sid for sub in sublist.subscriptions()) == [b"1", b"2", b"3", b"4"]


def test_cache_invalidation_insert_and_remove(impl: ModuleType) -> None:
    sublist = impl.Sublist()
    core = impl.ClientCore()
    first = sublist.match(b"foo.bar")
    assert sids(first) == set()
    sub = impl.Subscription(core, b"foo.*", b"1")
    sublist.insert(sub)
    assert sids(sublist.match(b"foo.bar")) == {b"1"}
    assert sids(first) == set()  # a result handed out is never mutated
    held = sublist.match(b"foo.bar")
    lit = impl.Subscription(core, b"foo.bar", b"2")
    sublist.insert(lit)
    assert sids(sublist.match(b"foo.bar")) == {b"1", b"2"}
    assert sids(held) == {b"1"}
    q = impl.Subscription(core, b">", b"3", b"g")
    sublist.insert(q)
    assert groups(sublist.match(b"foo.bar")) == [{b"3"}]
    sublist.remove(sub)
    assert sids(sublist.match(b"foo.bar")) == {b"2"}
    sublist.remove(lit)
    assert sids(sublist.match(b"foo.bar")) == set()
    sublist.remove(q)
    assert sublist.match(b"foo.bar").qsubs == []


def test_cache_invalidation_is_selective(impl: ModuleType) -> None:
    sublist = impl.Sublist()
    core = impl.ClientCore()
    sublist.insert(impl.Subscription(core, b">", b"1"))
    for subject in (b"a.x", b"a.y", b"b.x", b"c"):
        sublist.match(subject)
    assert sublist.statistics()["num_cache"] == 4
    sublist.insert(impl.Subscription(core, b"a.*", b"2"))
    assert sublist.statistics()["num_cache"] == 2  # a.x and a.y dropped, b.x and c kept
    sublist.insert(impl.Subscription(core, b"b.x", b"3"))
    assert sublist.statistics()["num_cache"] == 1
    sublist.insert(impl.Subscription(core, b"zzz", b"4"))
    assert sublist.statistics()["num_cache"] == 1
    assert sids(sublist.match(b"a.x")) == {b"1", b"2"}
    assert sids(sublist.match(b"b.x")) == {b"1", b"3"}
    assert sids(sublist.match(b"c")) == {b"1"}


def test_cache_is_bounded(impl: ModuleType) -> None:
    sublist = impl.Sublist()
    sublist.insert(impl.Subscription(None, b"s.*", b"1"))
    for index in range(3000):
        sublist.match(b"s.%d" % index)
        assert sublist.statistics()["num_cache"] <= impl.CACHE_MAX
    assert sids(sublist.match(b"s.5")) == {b"1"}


def test_cache_disabled(impl: ModuleType) -> None:
    sublist = impl.Sublist(cache=False)
    sublist.insert(impl.Subscription(None, b"a", b"1"))
    sublist.match(b"a")
    sublist.match(b"a")
    st = sublist.statistics()
    assert st["num_cache"] == 0 and st["cache_hit_rate"] == 0.0 and st["num_matches"] == 2


def test_statistics(impl: ModuleType) -> None:
    sublist = build(impl, [(b"a", b"1", None), (b"a", b"2", None), (b">", b"3", b"q"), (b">", b"4", b"q")])
    st = sublist.statistics()
    assert set(st) == {
        "num_subscriptions",
        "num_cache",
        "num_inserts",
        "num_removes",
        "num_matches",
        "cache_hit_rate",
        "max_fanout",
        "avg_fanout",
    }
    assert st["avg_fanout"] == 0.0 and st["cache_hit_rate"] == 0.0
    sublist.match(b"a")  # fanout 2 psubs + 1 group
    sublist.match(b"a")
    sublist.match(b"b")  # fanout 1
    sublist.match(b"b")
    st = sublist.statistics()
    assert st["num_subscriptions"] == 4
    assert st["num_inserts"] == 4
    assert st["num_removes"] == 0
    assert st["num_matches"] == 4
    assert st["num_cache"] == 2
    assert st["cache_hit_rate"] == pytest.approx(0.5)
    assert st["max_fanout"] == 3
    assert st["avg_fanout"] == pytest.approx(2.0)
    assert isinstance(st["cache_hit_rate"], float) and isinstance(st["avg_fanout"], float)


def test_has_interest(impl: ModuleType) -> None:
    sublist = build(impl, [(b"foo.*", b"1", None), (b"bar.>", b"2", b"q")])
    assert sublist.has_interest(b"foo.x")
    assert sublist.has_interest(b"bar.x.y")
    assert not sublist.has_interest(b"bar")
    assert not sublist.has_interest(b"foo.x.y")
    assert sublist.statistics()["num_cache"] == 0  # no cache fill
    sublist.match(b"foo.x")
    assert sublist.has_interest(b"foo.x")


# -- deliver --------------------------------------------------------------------------------------


def setup_pair(impl: ModuleType, **receiver_fields: Any) -> tuple[Any, Any, Any]:
    sublist = impl.Sublist()
    src = recorder(impl, sublist)
    dst = recorder(impl, sublist, **receiver_fields)
    return sublist, src, dst


@pytest.mark.parametrize(
    ("headers", "reply", "hdr_len", "msg", "expected"),
    [
        (False, b"", -1, b"hello", b"MSG foo.bar 9 5\r\nhello\r\n"),
        (False, b"in.1", -1, b"hello", b"MSG foo.bar 9 in.1 5\r\nhello\r\n"),
        (False, b"", -1, b"", b"MSG foo.bar 9 0\r\n\r\n"),
        (True, b"", -1, b"hello", b"MSG foo.bar 9 5\r\nhello\r\n"),
        (
            True,
            b"",
            24,
            b"NATS/1.0\r\nA: B\r\nA: C\r\n\r\nhi",
            b"HMSG foo.bar 9 24 26\r\nNATS/1.0\r\nA: B\r\nA: C\r\n\r\nhi\r\n",
        ),
        (True, b"r", 12, b"NATS/1.0\r\n\r\n", b"HMSG foo.bar 9 r 12 12\r\nNATS/1.0\r\n\r\n\r\n"),
        (False, b"", 12, b"NATS/1.0\r\n\r\ndata", b"MSG foo.bar 9 4\r\ndata\r\n"),  # stripped
        (False, b"r.x", 12, b"NATS/1.0\r\n\r\n", b"MSG foo.bar 9 r.x 0\r\n\r\n"),
        (True, b"", 5, b"hello", b"HMSG foo.bar 9 5 5\r\nhello\r\n"),  # not validated (§6.2)
    ],
)
def test_deliver_framing(
    impl: ModuleType, headers: bool, reply: bytes, hdr_len: int, msg: bytes, expected: bytes
) -> None:
    sublist, src, dst = setup_pair(impl, headers=headers)
    sublist.insert(impl.Subscription(dst, b"foo.*", b"9"))
    assert impl.deliver(src, b"foo.bar", reply, hdr_len, msg) == 1
    assert bytes(dst.outbuf) == expected
    assert (src.in_msgs, src.in_bytes) == (1, len(msg))
    body = len(msg) if (headers and hdr_len >= 0) else len(msg) - max(hdr_len, 0)
    assert (dst.out_msgs, dst.out_bytes) == (1, body)
    assert src.outbuf == bytearray()


def test_deliver_as_routes_on_one_subject_and_shows_another(impl: ModuleType) -> None:
    sublist, src, dst = setup_pair(impl, headers=True)
    sublist.insert(impl.Subscription(dst, b"_INBOX.x", b"4"))
    sublist.insert(impl.Subscription(dst, b"orders.>", b"5"))  # matches the shown subject only
    hdr = b"NATS/1.0\r\nA: b\r\n\r\n"
    assert impl.deliver_as(sublist, None, b"_INBOX.x", b"orders.new", b"$JS.ACK.a", len(hdr), hdr + b"hi") == 1
    assert bytes(dst.outbuf) == b"HMSG orders.new 4 $JS.ACK.a 18 20\r\n" + hdr + b"hi\r\n"
    seen: list[bytes] = []
    sublist.insert(impl.Subscription(None, b"_INBOX.y", b"", None, 0, lambda sub, s, subj, *rest: seen.append(subj)))
    assert impl.deliver_as(sublist, None, b"_INBOX.y", b"orders.old", b"", -1, b"x") == 1
    assert seen == [b"orders.old"]
    assert impl.deliver_to(sublist, None, b"orders.z", b"", -1, b"") == 1  # deliver_to == deliver_as(s, s)


def test_deliver_large_numbers_and_appends(impl: ModuleType) -> None:
    sublist, src, dst = setup_pair(impl, headers=True)
    sublist.insert(impl.Subscription(dst, b"x", b"123456789012"))
    payload = bytes(range(256)) * 4100  # 1_049_600 bytes
    impl.deliver(src, b"x", b"", 10, payload)
    impl.deliver(src, b"x", b"", -1, b"0123456789")
    expected = b"HMSG x 123456789012 10 1049600\r\n" + payload + b"\r\n"
    expected += b"MSG x 123456789012 10\r\n0123456789\r\n"
    assert bytes(dst.outbuf) == expected


def test_deliver_plain_and_queue_each_once(impl: ModuleType) -> None:
    sublist, src, dst = setup_pair(impl)
    other = recorder(impl, sublist)
    sublist.insert(impl.Subscription(dst, b"foo.*", b"1"))
    sublist.insert(impl.Subscription(dst, b"foo.>", b"2"))
    sublist.insert(impl.Subscription(dst, b"foo.bar", b"3"))
    sublist.insert(impl.Subscription(other, b"foo.bar", b"4", b"q"))
    sublist.insert(impl.Subscription(other, b">", b"5", b"q"))
    assert impl.deliver(src, b"foo.bar", b"", -1, b"x") == 4
    frames = bytes(dst.outbuf).split(b"\r\nx\r\n")
    assert sorted(frames[:-1]) == [b"MSG foo.bar 1 1", b"MSG foo.bar 2 1", b"MSG foo.bar 3 1"]
    assert bytes(other.outbuf).count(b"MSG") == 1
    # each receiver appears once on the publisher's pending list
    assert src.pending == [dst, other] and dst.flush_scheduled and other.flush_scheduled
    impl.deliver(src, b"foo.bar", b"", -1, b"x")
    assert src.pending == [dst, other]


def test_deliver_pending_when_src_none(impl: ModuleType) -> None:
    sublist = impl.Sublist()
    dst = recorder(impl, sublist)
    sublist.insert(impl.Subscription(dst, b"sys.x", b"1"))
    assert impl.deliver_to(sublist, None, b"sys.x", b"", -1, b"hi") == 1
    assert dst.pending == [dst]
    assert bytes(dst.outbuf) == b"MSG sys.x 1 2\r\nhi\r\n"
    with pytest.raises(TypeError):
        impl.deliver(None, b"sys.x", b"", -1, b"hi")


def test_deliver_unbound_client(impl: ModuleType) -> None:
    src = recorder(impl, None, no_responders=True)
    assert impl.deliver(src, b"a", b"r", -1, b"x") == 0
    assert src.in_msgs == 1
    assert src.events == [("no_responders", b"a", b"r")]


def test_flush_pending(impl: ModuleType) -> None:
    sublist, src, dst = setup_pair(impl)
    sublist.insert(impl.Subscription(dst, b"a", b"1"))
    impl.deliver(src, b"a", b"", -1, b"x")
    pending = src.pending
    impl.flush_pending(pending)
    assert pending == [] and pending is src.pending
    assert dst.flush_scheduled is False
    assert dst.flushed == [b"MSG a 1 1\r\nx\r\n"]
    assert dst.outbuf == bytearray()
    impl.deliver(src, b"a", b"", -1, b"y")
    assert src.pending == [dst]


def test_echo_false(impl: ModuleType) -> None:
    sublist, src, dst = setup_pair(impl)
    src.echo = False
    sublist.insert(impl.Subscription(src, b"a", b"1"))
    sublist.insert(impl.Subscription(dst, b"a", b"2"))
    assert impl.deliver(src, b"a", b"", -1, b"x") == 1
    assert src.outbuf == bytearray()
    # in a queue group the publisher's own member is skipped, another member takes it
    sublist.insert(impl.Subscription(src, b"b", b"3", b"q"))
    sublist.insert(impl.Subscription(dst, b"b", b"4", b"q"))
    for _ in range(20):
        assert impl.deliver(src, b"b", b"", -1, b"x") == 1
    assert src.outbuf == bytearray()
    src.echo = True
    assert impl.deliver(src, b"a", b"", -1, b"x") == 2


def test_max_msgs_auto_unsub(impl: ModuleType) -> None:
    sublist, src, dst = setup_pair(impl)
    sub = impl.Subscription(dst, b"a", b"1", max_msgs=2)
    sublist.insert(sub)
    assert impl.deliver(src, b"a", b"", -1, b"1") == 1
    assert dst.events == []
    assert impl.deliver(src, b"a", b"", -1, b"2") == 1
    assert dst.events == [("auto_unsub", b"1", True)]
    assert sub.closed and sub.delivered == 2
    assert impl.deliver(src, b"a", b"", -1, b"3") == 0  # still in the sublist, but closed
    assert dst.events == [("auto_unsub", b"1", True)]
    assert bytes(dst.outbuf) == b"MSG a 1 1\r\n1\r\nMSG a 1 1\r\n2\r\n"


def test_closed_subs_and_clients_skipped(impl: ModuleType) -> None:
    sublist, src, dst = setup_pair(impl)
    sub = impl.Subscription(dst, b"a", b"1")
    sub.closed = True
    sublist.insert(sub)
    assert impl.deliver(src, b"a", b"", -1, b"x") == 0
    closed_client = recorder(impl, sublist, closed=True)
    sublist.insert(impl.Subscription(closed_client, b"a", b"2"))
    assert impl.deliver(src, b"a", b"", -1, b"x") == 0
    # a closed queue member is passed over for a live one
    sublist.insert(impl.Subscription(closed_client, b"q", b"3", b"g"))
    sublist.insert(impl.Subscription(dst, b"q", b"4", b"g"))
    for _ in range(20):
        assert impl.deliver(src, b"q", b"", -1, b"x") == 1
    assert closed_client.outbuf == bytearray()


def test_internal_callbacks(impl: ModuleType) -> None:
    sublist, src, dst = setup_pair(impl)
    calls: list[tuple[Any, ...]] = []

    def callback(sub: Any, source: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        calls.append((sub.sid, source is src, subject, reply, hdr_len, msg))

    isub = impl.Subscription(None, b"api.>", b"i1", internal=callback, max_msgs=2)
    sublist.insert(isub)
    assert impl.deliver(src, b"api.x", b"r", 4, b"hdr!data") == 1
    assert impl.deliver(src, b"api.y", b"", -1, b"z") == 1
    assert impl.deliver(src, b"api.z", b"", -1, b"z") == 0
    assert calls == [(b"i1", True, b"api.x", b"r", 4, b"hdr!data"), (b"i1", True, b"api.y", b"", -1, b"z")]
    assert isub.closed and isub.delivered == 2
    assert src.pending == []
    # an internal subscription owned by a client reports its auto-unsubscribe on that client
    owned = impl.Subscription(dst, b"own", b"o1", internal=callback, max_msgs=1)
    sublist.insert(owned)
    assert impl.deliver(src, b"own", b"", -1, b"q") == 1
    assert dst.events == [("auto_unsub", b"o1", True)]
    assert dst.outbuf == bytearray() and dst.out_msgs == 0


def test_internal_callback_reentrancy(impl: ModuleType) -> None:
    sublist, src, dst = setup_pair(impl)
    sublist.insert(impl.Subscription(dst, b"req", b"1"))
    sublist.insert(impl.Subscription(dst, b"resp", b"2"))
    added: list[Any] = []

    def responder(sub: Any, source: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        # reentrant deliver from inside deliver, and a sublist change mid fan-out
        impl.deliver(source, b"resp", b"", -1, b"re:" + msg)
        new = impl.Subscription(dst, b"req", b"3")
        sublist.insert(new)
        added.append(new)

    isub = impl.Subscription(None, b"req", b"i", internal=responder, max_msgs=1)
    sublist.insert(isub)
    sublist.insert(impl.Subscription(dst, b"req", b"4"))
    assert impl.deliver(src, b"req", b"", -1, b"m") == 3  # 1, i, 4 (3 was added mid fan-out)
    out = bytes(dst.outbuf)
    assert out.count(b"MSG req 1 1\r\nm\r\n") == 1
    assert out.count(b"MSG req 4 1\r\nm\r\n") == 1
    assert out.count(b"MSG resp 2 4\r\nre:m\r\n") == 1
    assert b"MSG req 3" not in out
    assert src.in_msgs == 2 and src.pending == [dst]
    assert impl.deliver(src, b"req", b"", -1, b"n") == 3  # 1, 3, 4; internal closed


def test_internal_reentrant_on_itself_respects_max(impl: ModuleType) -> None:
    sublist, src, _ = setup_pair(impl)
    depth: list[int] = []

    def loop(sub: Any, source: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        depth.append(1)
        impl.deliver(source, subject, reply, hdr_len, msg)

    sublist.insert(impl.Subscription(None, b"loop", b"1", internal=loop, max_msgs=1))
    assert impl.deliver(src, b"loop", b"", -1, b"x") == 1
    assert depth == [1]


def test_slow_consumer(impl: ModuleType) -> None:
    sublist, src, dst = setup_pair(impl, max_pending=40)
    sublist.insert(impl.Subscription(dst, b"a", b"1"))
    frame = b"MSG a 1 10\r\n0123456789\r\n"  # 24 bytes
    assert impl.deliver(src, b"a", b"", -1, b"0123456789") == 1
    assert impl.deliver(src, b"a", b"", -1, b"0123456789") == 0
    assert dst.events == [("slow",)]
    assert bytes(dst.outbuf) == frame
    assert dst.out_msgs == 1
    dst.max_pending = 48  # exactly full is allowed
    assert impl.deliver(src, b"a", b"", -1, b"0123456789") == 1
    assert bytes(dst.outbuf) == frame * 2


def test_slow_consumer_queue_member_falls_through(impl: ModuleType) -> None:
    sublist, src, dst = setup_pair(impl, max_pending=0)
    ok = recorder(impl, sublist)
    sublist.insert(impl.Subscription(dst, b"a", b"1", b"q"))
    sublist.insert(impl.Subscription(ok, b"a", b"2", b"q"))
    for _ in range(10):
        assert impl.deliver(src, b"a", b"", -1, b"x") == 1
    assert ok.out_msgs == 10 and dst.out_msgs == 0


def test_deny_filter_at_delivery(impl: ModuleType) -> None:
    """A client's deny filter refuses subjects to its subscriptions (plain and queue), on the routed
    subject; a refused queue member passes the message to another member."""
    sublist, src, dst = setup_pair(impl)
    other = recorder(impl, sublist)
    asked: list[tuple[bytes, bytes | None]] = []

    def deny(subject: bytes, queue: bytes | None) -> bool:
        asked.append((subject, queue))
        return subject.startswith(b"a.secret")

    dst.deny_filter = deny
    sublist.insert(impl.Subscription(dst, b"a.>", b"1"))
    sublist.insert(impl.Subscription(dst, b"a.>", b"2", b"q"))
    sublist.insert(impl.Subscription(other, b"a.>", b"3", b"q"))
    assert impl.deliver(src, b"a.ok", b"", -1, b"x") == 2
    for _ in range(40):  # the queue member is chosen at random: the refused one must pass it on
        assert impl.deliver(src, b"a.secret.x", b"", -1, b"y") == 1  # only the other queue member
    assert b"a.secret.x" in bytes(other.outbuf)
    assert b"a.secret" not in bytes(dst.outbuf)
    assert (b"a.secret.x", None) in asked and (b"a.secret.x", b"q") in asked
    # deliver_as asks about the routed subject, not the one shown
    asked.clear()
    sublist.insert(impl.Subscription(dst, b"d.x", b"4"))
    impl.deliver_as(sublist, None, b"d.x", b"a.secret.shown", b"", -1, b"z")
    assert asked == [(b"d.x", None)]
    assert b"MSG a.secret.shown 4 1" in bytes(dst.outbuf)


def test_no_responders(impl: ModuleType) -> None:
    sublist, src, dst = setup_pair(impl)
    src.no_responders = True
    assert impl.deliver(src, b"nobody", b"_INBOX.1", -1, b"") == 0
    assert src.events == [("no_responders", b"nobody", b"_INBOX.1")]
    assert impl.deliver(src, b"nobody", b"", -1, b"") == 0  # no reply: no hook
    src.no_responders = False
    assert impl.deliver(src, b"nobody", b"_INBOX.1", -1, b"") == 0
    assert len(src.events) == 1
    src.no_responders = True
    sublist.insert(impl.Subscription(dst, b"somebody", b"1"))
    assert impl.deliver(src, b"somebody", b"_INBOX.2", -1, b"") == 1
    assert len(src.events) == 1
    closed = impl.Subscription(dst, b"gone", b"2")
    closed.closed = True
    sublist.insert(closed)
    assert impl.deliver(src, b"gone", b"_INBOX.3", -1, b"") == 0
    assert src.events[-1] == ("no_responders", b"gone", b"_INBOX.3")


def test_track_replies(impl: ModuleType) -> None:
    sublist, src, dst = setup_pair(impl, track_replies=True)
    plain = recorder(impl, sublist)
    sublist.insert(impl.Subscription(dst, b"svc", b"1"))
    sublist.insert(impl.Subscription(plain, b"svc", b"2"))
    impl.deliver(src, b"svc", b"_INBOX.9", -1, b"")
    impl.deliver(src, b"svc", b"", -1, b"")
    assert dst.events == [("reply", b"_INBOX.9")]
    assert plain.events == []


def test_queue_members_spread_evenly(impl: ModuleType) -> None:
    sublist = impl.Sublist()
    src = impl.ClientCore()
    src.sublist = sublist
    members = [impl.ClientCore() for _ in range(4)]
    for index, member in enumerate(members):
        sublist.insert(impl.Subscription(member, b"work", str(index).encode(), b"q"))
    samples = 8000
    for _ in range(samples):
        assert impl.deliver(src, b"work", b"", -1, b"") == 1
    counts = Counter(member.out_msgs for member in members)
    assert sum(member.out_msgs for member in members) == samples
    # expected 2000 each, sd ~39; 1700..2300 is > 7 sd away: a false failure is practically impossible
    for member in members:
        assert 1700 < member.out_msgs < 2300, counts


def test_result_safe_while_sublist_changes(impl: ModuleType) -> None:
    sublist = impl.Sublist()
    core = impl.ClientCore()
    subs = [impl.Subscription(core, b"a.*", str(i).encode(), b"q" if i % 2 else None) for i in range(10)]
    for sub in subs:
        sublist.insert(sub)
    result = sublist.match(b"a.b")
    psubs_before = list(result.psubs)
    qsubs_before = [list(group) for group in result.qsubs]
    for sub in subs[:5]:
        sublist.remove(sub)
    sublist.insert(impl.Subscription(core, b"a.b", b"x"))
    assert result.psubs == psubs_before
    assert [list(group) for group in result.qsubs] == qsubs_before


# -- routes ----------------------------------------------------------------------------------------


def route_core(impl: ModuleType, sublist: Any, headers: bool = True) -> Any:
    return recorder(impl, sublist, kind=impl.KIND_ROUTER, headers=headers)


def test_route_gets_one_rmsg_per_message(impl: ModuleType) -> None:
    sublist, src, local = setup_pair(impl)
    sublist.account = b"APP"
    route = route_core(impl, sublist)
    sublist.insert(impl.Subscription(local, b"a.b", b"1"))
    sublist.insert(impl.Subscription(route, b"a.*", b"r1"))
    sublist.insert(impl.Subscription(route, b"a.>", b"r2"))
    assert impl.deliver(src, b"a.b", b"", -1, b"hi") == 2
    assert bytes(route.outbuf) == b"RMSG APP a.b 2\r\nhi\r\n"
    assert bytes(local.outbuf) == b"MSG a.b 1 2\r\nhi\r\n"
    assert route.out_msgs == 1 and route.out_bytes == 2
    impl.deliver(src, b"a.c", b"_INBOX.x", 12, b"NATS/1.0\r\n\r\nyo")
    assert bytes(route.outbuf).endswith(b"HMSG APP a.c _INBOX.x 12 14\r\nNATS/1.0\r\n\r\nyo\r\n")
    plain = route_core(impl, sublist, headers=False)
    sublist.insert(impl.Subscription(plain, b"z", b"r3"))
    impl.deliver(src, b"z", b"", 12, b"NATS/1.0\r\n\r\nyo")
    assert bytes(plain.outbuf) == b"RMSG APP z 2\r\nyo\r\n"


def test_queue_members_spread_over_the_cluster(impl: ModuleType) -> None:
    """A group's member is picked among local and remote members alike (nats-server), a remote one
    counting its weight; groups on the same route share one RMSG."""
    sublist, src, local = setup_pair(impl)
    sublist.account = b"A"
    route = route_core(impl, sublist)
    remote = impl.Subscription(route, b"q", b"r", b"g1")
    remote.weight = 3
    sublist.insert(remote)
    sublist.insert(impl.Subscription(route, b"q", b"r", b"g2"))
    sublist.insert(impl.Subscription(local, b"q", b"1", b"g1"))
    for _ in range(400):
        impl.deliver(src, b"q", b"", -1, b"x")
    frames = bytes(route.outbuf).count(b"RMSG")
    assert frames == 400  # g2 lives only there
    via_route = bytes(route.outbuf).count(b"| g2 g1 1") + bytes(route.outbuf).count(b"| g1 g2 1")
    assert via_route + local.out_msgs == 400
    assert 200 < via_route < 390  # about 3 of 4 for g1 go to the member weighing 3
    route.outbuf = bytearray()
    impl.deliver(src, b"q", b"rep", -1, b"x")
    assert bytes(route.outbuf).startswith(b"RMSG A q + rep g")


def test_routed_message_stays_here(impl: ModuleType) -> None:
    """A message from a route reaches local plain subs and the queue groups it names, never a route."""
    sublist = impl.Sublist()
    inbound = route_core(impl, sublist)
    other_route = route_core(impl, sublist)
    local = recorder(impl, sublist)
    sublist.insert(impl.Subscription(local, b"m", b"1"))
    sublist.insert(impl.Subscription(local, b"m", b"2", b"g"))
    sublist.insert(impl.Subscription(local, b"m", b"3", b"h"))
    sublist.insert(impl.Subscription(other_route, b"m", b"r"))
    sublist.insert(impl.Subscription(other_route, b"m", b"r", b"g"))
    assert impl.deliver_as(sublist, inbound, b"m", b"m", b"", -1, b"x", [b"g"]) == 2
    assert bytes(local.outbuf) == b"MSG m 1 1\r\nx\r\nMSG m 2 1\r\nx\r\n"
    assert bytes(other_route.outbuf) == b""
    local.outbuf = bytearray()
    assert impl.deliver_as(sublist, inbound, b"m", b"m", b"", -1, b"x") == 1  # no queues named
    assert bytes(local.outbuf) == b"MSG m 1 1\r\nx\r\n"


def test_remote_queue_weight_shadows_the_sub(impl: ModuleType) -> None:
    sublist = impl.Sublist()
    route = route_core(impl, sublist)
    sub = impl.Subscription(route, b"w", b"r", b"g")
    sub.weight = 3
    sublist.insert(sub)
    sublist.insert(impl.Subscription(recorder(impl, sublist), b"w", b"1", b"g"))
    (group,) = sublist.match(b"w").qsubs
    assert len(group) == 4 and group.count(sub) == 3
    assert sublist.count == 2


def test_route_interest_counts_for_no_responders(impl: ModuleType) -> None:
    sublist, src, _ = setup_pair(impl, headers=True)
    src.no_responders = True
    route = route_core(impl, sublist)
    sublist.insert(impl.Subscription(route, b"svc", b"r"))
    assert impl.deliver(src, b"svc", b"_INBOX.1", -1, b"?") == 1
    assert ("no_responders", b"svc", b"_INBOX.1") not in src.events
