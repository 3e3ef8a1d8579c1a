"""Differential property tests: the sublist twins against each other and the naive matcher.

Random insert/remove/match sequences must give the same subscriptions in both twins and in a model
built on `jsedge.subjects.subject_matches`; random deliver scenarios must produce byte-identical
output buffers, the same hook calls and the same counters in both twins (queue groups have one
member each there, so the random member choice cannot differ).
"""

from __future__ import annotations

import importlib
import itertools
import os
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jsedge import subjects
from jsedge.routing import _sublist_py


def _load_c() -> ModuleType | None:
    if os.environ.get("JSEDGE_NO_EXTENSIONS", "") not in ("", "0"):
        return None
    try:
        return importlib.import_module("jsedge._speedups.sublist")
    except ImportError as exc:  # a missing compiled twin is a failure, never a skip
        pytest.fail(f"compiled sublist twin not importable: {exc}")


@pytest.fixture(params=["py", "c"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    if request.param == "py":
        return _sublist_py
    module = _load_c()
    if module is None:
        pytest.skip("JSEDGE_NO_EXTENSIONS is set")
    return module


@pytest.fixture
def twins() -> list[ModuleType]:
    """Every twin available: both normally, only the Python one under JSEDGE_NO_EXTENSIONS."""
    module = _load_c()
    return [_sublist_py] if module is None else [_sublist_py, module]


# The fixtures are stateless module selectors, so sharing them across examples is fine.
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Small alphabets make collisions (shared nodes, overlapping wildcards, queue merges) frequent.
literal_tokens = st.sampled_from([b"a", b"b", b"c", "ö".encode(), b"*x", b"x>", b"$KV"])  # $KV: held back from leaves
filter_tokens = st.one_of(literal_tokens, st.just(b"*"))


@st.composite
def filters(draw: st.DrawFn) -> bytes:
    tokens = draw(st.lists(filter_tokens, min_size=1, max_size=4))
    if draw(st.booleans()) and len(tokens) < 4:
        tokens.append(b">")
    return b".".join(tokens)


# Published subjects: mostly literal, sometimes wildcard tokens (non-pedantic PUB) or empty tokens.
publish_tokens = st.one_of(literal_tokens, st.sampled_from([b"*", b">", b""]))
publish_subjects = st.lists(publish_tokens, min_size=1, max_size=5).map(b".".join)

queues = st.one_of(st.none(), st.sampled_from([b"q1", b"q2"]))

operations = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), filters(), queues),
        st.tuples(st.just("remove"), st.integers(min_value=0, max_value=1000)),
        st.tuples(st.just("match"), publish_subjects),
    ),
    max_size=60,
)


def normalize(result: Any) -> tuple[frozenset[bytes], frozenset[frozenset[bytes]]]:
    psubs = frozenset(sub.sid for sub in result.psubs)
    assert len(psubs) == len(result.psubs)
    qsubs = frozenset(frozenset(sub.sid for sub in group) for group in result.qsubs)
    assert all(result.qsubs)
    return psubs, qsubs


def model_match(
    live: list[tuple[bytes, bytes, bytes | None]], subject: bytes
) -> tuple[frozenset[bytes], frozenset[frozenset[bytes]]]:
    psubs = frozenset(sid for filt, sid, queue in live if queue is None and subjects.subject_matches(filt, subject))
    grouped: dict[bytes, set[bytes]] = {}
    for filt, sid, queue in live:
        if queue is not None and subjects.subject_matches(filt, subject):
            grouped.setdefault(queue, set()).add(sid)
    return psubs, frozenset(frozenset(group) for group in grouped.values())


@SETTINGS
@given(ops=operations, cache=st.booleans())
def test_sublist_agrees_with_model_and_twin(twins: list[ModuleType], ops: list[Any], cache: bool) -> None:
    sublists = [module.Sublist(cache=cache) for module in twins]
    subs: list[list[Any]] = [[] for _ in twins]  # inserted subscription objects, per twin
    live: list[tuple[bytes, bytes, bytes | None]] = []
    next_sid = 0
    for op in ops:
        if op[0] == "insert":
            _, filt, queue = op
            sid = b"%d" % next_sid
            next_sid += 1
            for module, sublist, own in zip(twins, sublists, subs, strict=True):
                sub = module.Subscription(None, filt, sid, queue)
                sublist.insert(sub)
                own.append(sub)
            live.append((filt, sid, queue))
        elif op[0] == "remove":
            if not subs[0]:
                continue
            index = op[1] % len(subs[0])
            sid = subs[0][index].sid
            removed = [sublist.remove(own[index]) for sublist, own in zip(sublists, subs, strict=True)]
            expected = any(entry[1] == sid for entry in live)
            assert removed == [expected] * len(twins)
            live = [entry for entry in live if entry[1] != sid]
        else:
            subject = op[1]
            expected_match = model_match(live, subject)
            for sublist in sublists:
                assert normalize(sublist.match(subject)) == expected_match, subject
                assert sublist.has_interest(subject) == bool(expected_match[0] or expected_match[1])
        for sublist in sublists:
            assert sublist.count == len(live)
    stats = [sublist.statistics() for sublist in sublists]
    assert all(stat == stats[0] for stat in stats)
    for sublist in sublists:
        assert sorted(sub.sid for sub in sublist.subscriptions()) == sorted(entry[1] for entry in live)


@SETTINGS
@given(
    inserted=st.lists(st.tuples(filters(), queues), max_size=20),
    probes=st.lists(publish_subjects, min_size=1, max_size=20),
)
def test_cached_results_follow_changes(impl: ModuleType, inserted: list[Any], probes: list[bytes]) -> None:
    """After every change, every probe (cached or not) equals a cache-less sublist's answer."""
    cached = impl.Sublist()
    fresh = impl.Sublist(cache=False)
    subs = []
    for index, (filt, queue) in enumerate(inserted):
        pair = [impl.Subscription(None, filt, b"%d" % index, queue) for _ in range(2)]
        cached.insert(pair[0])
        fresh.insert(pair[1])
        subs.append(pair)
        for probe in probes:
            assert normalize(cached.match(probe)) == normalize(fresh.match(probe))
    for pair in subs:
        cached.remove(pair[0])
        fresh.remove(pair[1])
        for probe in probes:
            assert normalize(cached.match(probe)) == normalize(fresh.match(probe))


# -- subjects algebra ------------------------------------------------------------------------------

# Every literal subject of up to 5 tokens over {a, b, c}: "c" stands in for "any other token", so the
# universe holds a witness for every (non-)subset and overlap question about filters over {a, b, *, >}
# of up to 4 tokens.
UNIVERSE = [
    b".".join(tokens) for length in range(1, 6) for tokens in itertools.product([b"a", b"b", b"c"], repeat=length)
]

small_filters = st.lists(st.sampled_from([b"a", b"b", b"*"]), min_size=1, max_size=3).flatmap(
    lambda tokens: st.sampled_from([b".".join(tokens), b".".join([*tokens, b">"])])
) | st.just(b">")


@SETTINGS
@given(a=small_filters, b=small_filters)
def test_subset_and_overlap_against_universe(a: bytes, b: bytes) -> None:
    matched_a = {s for s in UNIVERSE if subjects.subject_matches(a, s)}
    matched_b = {s for s in UNIVERSE if subjects.subject_matches(b, s)}
    assert subjects.subject_is_subset(a, b) == (matched_a <= matched_b)
    assert subjects.subjects_overlap(a, b) == bool(matched_a & matched_b)


@SETTINGS
@given(subject=st.binary(max_size=12) | publish_subjects)
def test_validity_rules(subject: bytes) -> None:
    tokens = subject.split(b".")
    valid = (
        bool(subject)
        and all(tokens)
        and not any(ws in subject for ws in (b" ", b"\t", b"\r", b"\n", b"\f"))
        and b">" not in tokens[:-1]
    )
    assert subjects.valid_subject(subject) == valid
    assert subjects.valid_literal_subject(subject) == (valid and b"*" not in tokens and b">" not in tokens)
    assert subjects.tokens_count(subject) == (len(tokens) if subject else 0)


# -- deliver scenarios -----------------------------------------------------------------------------

client_configs = st.fixed_dictionaries(
    {
        "headers": st.booleans(),
        "echo": st.booleans(),
        "no_responders": st.booleans(),
        "track_replies": st.booleans(),
        "closed": st.booleans(),
        "max_pending": st.sampled_from([0, 60, 200, 67108864]),
        # KIND_CLIENT, KIND_ROUTER (RMSG framing, one hop) or KIND_LEAF (LMSG framing; `spoke`:
        # dialled to a hub, never passes a hub's message to another hub)
        "kind": st.sampled_from([0, 0, 1, 2]),
        "spoke": st.booleans(),
    }
)

sub_specs = st.tuples(
    st.integers(min_value=0, max_value=2),  # owning client, or internal when 2 and flag below
    filters(),
    st.booleans(),  # queue: a group of exactly one member (a unique name)
    st.integers(min_value=0, max_value=3),  # max_msgs
    st.booleans(),  # internal callback
    st.booleans(),  # closed
)

messages = st.tuples(
    st.integers(min_value=0, max_value=2),  # publisher, 2 = server (src None)
    publish_subjects,
    st.sampled_from([b"", b"r", b"_INBOX.x.1"]),
    st.one_of(
        st.tuples(st.just(-1), st.binary(max_size=40)),
        st.binary(max_size=40).flatmap(lambda m: st.tuples(st.integers(0, len(m)), st.just(m))),
    ),
    st.one_of(st.none(), st.lists(st.sampled_from([b"g0", b"g1", b"g3", b"gx"]), max_size=3)),  # routed queues
)


def run_scenario(module: ModuleType, clients_cfg: list[dict[str, Any]], specs: list[Any], msgs: list[Any]) -> Any:
    log: list[Any] = []

    class Client(module.ClientCore):  # type: ignore[misc, name-defined]
        def __init__(self, name: int) -> None:
            super().__init__()
            self.name = name

        def flush(self) -> None:
            log.append(("flush", self.name, bytes(self.outbuf)))
            self.outbuf = bytearray()

        def on_slow_consumer(self) -> None:
            log.append(("slow", self.name))

        def on_auto_unsub(self, sub: Any) -> None:
            log.append(("auto_unsub", self.name, sub.sid, sub.closed))

        def on_no_responders(self, subject: bytes, reply: bytes) -> None:
            log.append(("no_responders", self.name, subject, reply))

        def on_reply_delivered(self, reply: bytes) -> None:
            log.append(("reply", self.name, reply))

    sublist = module.Sublist()
    pending: list[Any] = []
    clients = []
    for name, cfg in enumerate(clients_cfg):
        client = Client(name)
        client.sublist = sublist
        client.pending = pending
        for key, value in cfg.items():
            setattr(client, key, value)
        clients.append(client)

    def callback(sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        log.append(("internal", sub.sid, None if src is None else src.name, subject, reply, hdr_len, msg))

    for index, (owner, filt, queued, max_msgs, internal, closed) in enumerate(specs):
        client = clients[owner] if owner < 2 else None
        sub = module.Subscription(
            client,
            filt,
            b"%d" % index,
            b"g%d" % index if queued else None,
            max_msgs,
            callback if (internal or client is None) else None,
        )
        sub.closed = closed
        sublist.insert(sub)

    for publisher, subject, reply, (hdr_len, msg), queues in msgs:
        if publisher < 2 and queues is not None:
            count = module.deliver_as(sublist, clients[publisher], subject, subject, reply, hdr_len, msg, queues)
        elif publisher < 2:
            count = module.deliver(clients[publisher], subject, reply, hdr_len, msg)
        else:
            count = module.deliver_to(sublist, None, subject, reply, hdr_len, msg)
        log.append(("count", count, [c.name for c in pending], [c.name for c in clients[0].pending]))
        if count % 2:
            module.flush_pending(pending)  # flush sometimes, so outbufs also accumulate
            module.flush_pending(clients[0].pending)
    state = [(bytes(c.outbuf), c.in_msgs, c.in_bytes, c.out_msgs, c.out_bytes, c.flush_scheduled) for c in clients]
    subs_state = sorted((sub.sid, sub.delivered, sub.closed) for sub in sublist.subscriptions())
    return log, state, subs_state, sublist.statistics()


@SETTINGS
@given(
    clients_cfg=st.lists(client_configs, min_size=2, max_size=2),
    specs=st.lists(sub_specs, max_size=8),
    msgs=st.lists(messages, min_size=1, max_size=8),
)
def test_deliver_twins_identical(
    twins: list[ModuleType], clients_cfg: list[dict[str, Any]], specs: list[Any], msgs: list[Any]
) -> None:
    results = [run_scenario(module, clients_cfg, specs, msgs) for module in twins]
    for result in results[1:]:
        assert result == results[0]


@SETTINGS
@given(
    specs=st.lists(st.tuples(filters(), st.booleans()), max_size=8),
    msgs=st.lists(st.tuples(publish_subjects, st.binary(max_size=20)), min_size=1, max_size=5),
)
def test_deliver_reaches_exactly_the_matching_subs(impl: ModuleType, specs: list[Any], msgs: list[Any]) -> None:
    sublist = impl.Sublist()
    src = impl.ClientCore()
    src.sublist = sublist
    dst = impl.ClientCore()
    for index, (filt, _queued) in enumerate(specs):
        sublist.insert(impl.Subscription(dst, filt, b"%d" % index))
    for subject, payload in msgs:
        before = len(dst.outbuf)
        count = impl.deliver(src, subject, b"", -1, payload)
        expected = [b"%d" % i for i, (filt, _) in enumerate(specs) if subjects.subject_matches(filt, subject)]
        assert count == len(expected)
        got = []
        frames = bytes(dst.outbuf[before:])
        while frames:
            line, _, rest = frames.partition(b"\r\n")
            size = int(line.rsplit(b" ", 1)[1])
            assert rest[size : size + 2] == b"\r\n"
            got.append(line + b"\r\n" + rest[:size] + b"\r\n")
            frames = rest[size + 2 :]
        want = [b"MSG %b %b %d\r\n%b\r\n" % (subject, sid, len(payload), payload) for sid in expected]
        assert sorted(got) == sorted(want)
