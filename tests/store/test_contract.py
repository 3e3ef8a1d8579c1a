"""The StreamStore/ConsumerStore contract (jsedge/store/base.py, streams.md §8–§14), run against every
store kind: the memstore and the filestore (real files in tmp_path, small blocks so rotation and block
removal happen inside the tests). Time is injected through `ts`/`now`."""

from __future__ import annotations

import asyncio

import pytest

from jsedge.store.base import (
    ConsumerState,
    DiscardNewError,
    DiscardPolicy,
    Pending,
    SequencePair,
    StoreClosedError,
    SubjectState,
)

T0 = 1_700_000_000_000_000_000
SEC = 1_000_000_000


def fill(store, subjects, ts=T0, data=b"x"):
    return [store.store_msg(s, b"", data, ts + i) for i, s in enumerate(subjects)]


# ---- sequences and state ---------------------------------------------------------------------


def test_new_store_state(stores):
    st = stores.open().state()
    assert (st.messages, st.bytes, st.first_seq, st.last_seq, st.first_ts, st.last_ts) == (0, 0, 0, 0, 0, 0)


def test_first_seq_config(stores):
    store = stores.open(first_seq=100)
    st = store.state()
    assert (st.first_seq, st.last_seq) == (100, 99)
    assert store.store_msg(b"a", b"", b"1", T0) == 100
    assert store.store_msg(b"a", b"", b"2", T0 + 1) == 101


def test_store_and_load(stores):
    store = stores.open()
    seq = store.store_msg(b"foo.bar", b"NATS/1.0\r\nX: y\r\n\r\n", b"hello", T0)
    assert seq == 1
    msg = store.load_msg(1)
    assert (msg.subject, msg.seq, msg.ts, msg.hdr, msg.data) == (
        b"foo.bar",
        1,
        T0,
        b"NATS/1.0\r\nX: y\r\n\r\n",
        b"hello",
    )
    assert store.load_msg(2) is None
    assert store.load_msg(0) is None
    st = store.state()
    assert (st.messages, st.first_seq, st.last_seq, st.first_ts, st.last_ts, st.num_subjects) == (1, 1, 1, T0, T0, 1)
    assert st.bytes == store.msg_size(b"foo.bar", b"NATS/1.0\r\nX: y\r\n\r\n", b"hello")


def test_msg_size_formulas(stores):
    store = stores.open()
    hdr = b"NATS/1.0\r\nNats-Rollup: all\r\n\r\n"
    assert len(hdr) == 30
    if stores.kind != "memory":
        assert store.msg_size(b"p.z", hdr, b"0123456789") == 77
        assert store.msg_size(b"p.z", b"", b"0123456789") == 43
    else:
        assert store.msg_size(b"p.z", hdr, b"0123456789") == 59
        assert store.msg_size(b"abc", b"", b"12345678") == 27


def test_skip_msg_consumes_sequence(stores):
    store = stores.open()
    assert store.skip_msg(T0) == 1
    st = store.state()
    assert (st.messages, st.first_seq, st.last_seq, st.last_ts) == (0, 2, 1, T0)
    assert store.store_msg(b"a", b"", b"x", T0 + 1) == 2
    assert store.skip_msg(T0 + 2) == 3
    st = store.state()
    assert (st.messages, st.first_seq, st.last_seq, st.num_deleted) == (1, 2, 3, 1)
    assert store.store_msg(b"a", b"", b"x", T0 + 3) == 4


def test_remove_msg_and_gaps(stores):
    store = stores.open()
    fill(store, [b"a", b"b", b"a", b"c", b"a"])
    calls = []
    store.set_removed_callback(lambda seq, subj: calls.append(seq))
    assert store.remove_msg(3)
    assert not store.remove_msg(3)
    assert not store.remove_msg(99)
    assert calls == []  # plain deletes do not call back
    st = store.state(deleted_details=True)
    assert (st.messages, st.first_seq, st.last_seq, st.num_deleted, st.deleted) == (4, 1, 5, 1, [3])
    assert store.remove_msg(1, erase=True)
    st = store.state(deleted_details=True)
    assert (st.first_seq, st.num_deleted, st.deleted) == (2, 1, [3])
    assert store.remove_msg(5)
    st = store.state()
    assert (st.messages, st.last_seq, st.num_deleted) == (2, 5, 2)  # last_seq never moves back
    assert store.store_msg(b"z", b"", b"", T0 + 10) == 6  # never reused
    assert store.subjects_state(b"a") == {}
    assert store.subjects_state(b">") == {
        b"b": SubjectState(1, 2, 2),
        b"c": SubjectState(1, 4, 4),
        b"z": SubjectState(1, 6, 6),
    }


def test_remove_everything_keeps_last(stores):
    store = stores.open()
    fill(store, [b"a", b"b"])
    store.remove_msg(1)
    store.remove_msg(2)
    st = store.state()
    assert (st.messages, st.first_seq, st.last_seq, st.first_ts, st.last_ts) == (0, 3, 2, 0, T0 + 1)


# ---- purge (streams.md §9) ---------------------------------------------------------------------


def pg_stream(stores):
    store = stores.open(first_seq=100)
    fill(store, [b"pg.a", b"pg.b", b"pg.a", b"pg.c", b"pg.a", b"pg.b", b"pg.a"])
    return store


def test_purge_all(stores):
    store = pg_stream(stores)
    removed = []
    store.set_removed_callback(lambda seq, subj: removed.append(seq))
    assert store.purge() == 7
    st = store.state()
    assert (st.messages, st.bytes, st.first_seq, st.last_seq, st.first_ts, st.last_ts) == (0, 0, 107, 106, 0, T0 + 6)
    assert sorted(removed) == list(range(100, 107))
    assert store.store_msg(b"pg.a", b"", b"", T0 + 10) == 107
    assert store.purge(b">") == 1
    assert store.purge(b"") == 0


def test_purge_filter_keep(stores):
    store = pg_stream(stores)
    assert store.purge(b"pg.a", keep=1) == 3
    st = store.state(deleted_details=True)
    assert (st.messages, st.first_seq, st.last_seq, st.num_subjects, st.deleted) == (4, 101, 106, 3, [102, 104])
    assert st.bytes == 4 * store.msg_size(b"pg.a", b"", b"x")


def test_purge_seq(stores):
    store = pg_stream(stores)
    assert store.purge(seq=103) == 3
    assert store.state().first_seq == 103
    assert store.purge(seq=1) == 0


def test_purge_filter_seq(stores):
    store = pg_stream(stores)
    assert store.purge(b"pg.a", seq=104) == 2  # 100, 102
    assert [store.load_msg(s) is not None for s in range(100, 107)] == [False, True, False, True, True, True, True]


def test_purge_wildcard_filter_keep(stores):
    store = pg_stream(stores)
    assert store.purge(b"pg.*", keep=2) == 5
    assert store.state().first_seq == 105


def test_purge_keep_whole(stores):
    store = pg_stream(stores)
    assert store.purge(keep=2) == 5
    assert store.state().first_seq == 105
    assert store.purge(keep=5) == 0


def test_purge_seq_beyond_last_moves_stream(stores):
    store = pg_stream(stores)
    assert store.purge(seq=200) == 7
    st = store.state()
    assert (st.messages, st.first_seq, st.last_seq, st.last_ts) == (0, 200, 199, T0 + 6)
    assert store.store_msg(b"pg.a", b"", b"", T0 + 100) == 200
    st = store.state()
    assert (st.messages, st.first_seq, st.last_seq) == (1, 200, 200)


# ---- limits (streams.md §8) ----------------------------------------------------------------------


def test_max_msgs_discard_old(stores):
    store = stores.open(max_msgs=2)
    removed = []
    store.set_removed_callback(lambda seq, subj: removed.append((seq, subj)))
    fill(store, [b"a", b"b", b"c"])
    st = store.state()
    assert (st.messages, st.first_seq, st.last_seq) == (2, 2, 3)
    assert removed == [(1, b"a")]


def test_max_bytes_discard_old(stores):
    store = stores.open()
    size = store.msg_size(b"a", b"", b"x" * 10)
    store.update_config(stores.config(max_bytes=size * 3))
    for i in range(5):
        store.store_msg(b"a", b"", b"x" * 10, T0 + i)
    st = store.state()
    assert (st.messages, st.bytes, st.first_seq) == (3, size * 3, 3)


def test_max_msgs_per_subject_both_policies(stores):
    for discard in (DiscardPolicy.OLD, DiscardPolicy.NEW):
        store = stores.open(f"S{discard.value}", max_msgs_per_subject=2, discard=discard)
        fill(store, [b"k.a", b"k.a", b"k.b", b"k.a"])
        assert store.subjects_state(b"k.a") == {b"k.a": SubjectState(2, 2, 4)}
        assert store.state().messages == 3


def test_discard_new_max_msgs_with_subject_exception(stores):
    store = stores.open(max_msgs=3, max_msgs_per_subject=2, discard=DiscardPolicy.NEW)
    fill(store, [b"kvl.a", b"kvl.a", b"kvl.b"])
    with pytest.raises(DiscardNewError) as err:
        store.store_msg(b"kvl.c", b"", b"x", T0 + 10)
    assert err.value.reason == "maximum messages exceeded"
    assert store.state().last_seq == 3  # a rejection consumes no sequence
    assert store.store_msg(b"kvl.a", b"", b"x", T0 + 11) == 4
    assert store.state().messages == 3
    assert store.load_msg(1) is None


def test_discard_new_per_subject(stores):
    store = stores.open(max_msgs_per_subject=1, discard=DiscardPolicy.NEW, discard_new_per_subject=True)
    store.store_msg(b"a", b"", b"1", T0)
    with pytest.raises(DiscardNewError) as err:
        store.store_msg(b"a", b"", b"2", T0 + 1)
    assert err.value.reason == "maximum messages per subject exceeded"
    assert store.store_msg(b"a", b"", b"3", T0 + 2, rollup=True) == 2  # a rollup is allowed through
    assert store.state().messages == 1


def test_discard_new_max_bytes(stores):
    store = stores.open()
    size = store.msg_size(b"a", b"", b"x" * 10)
    store.update_config(stores.config(max_bytes=size * 2, discard=DiscardPolicy.NEW, max_msgs_per_subject=1))
    store.store_msg(b"a", b"", b"x" * 10, T0)
    store.store_msg(b"b", b"", b"x" * 10, T0 + 1)
    with pytest.raises(DiscardNewError) as err:
        store.store_msg(b"c", b"", b"x" * 10, T0 + 2)
    assert err.value.reason == "maximum bytes exceeded"
    # subject at its limit and dropping its oldest frees enough
    assert store.store_msg(b"a", b"", b"y" * 10, T0 + 3) == 3
    with pytest.raises(DiscardNewError):  # frees too little
        store.store_msg(b"a", b"", b"y" * 11, T0 + 4)


def test_update_config_lowers_limits_at_once(stores):
    store = stores.open()
    removed = []
    store.set_removed_callback(lambda seq, subj: removed.append(seq))
    fill(store, [b"a", b"a", b"a", b"b", b"b"])
    store.update_config(stores.config(max_msgs_per_subject=1))
    assert store.state().messages == 2
    store.update_config(stores.config(max_msgs=1))
    st = store.state()
    assert (st.messages, st.first_seq) == (1, 5)
    assert sorted(removed) == [1, 2, 3, 4]
    # discard new does not remove on update (nats-server enforces only for discard old)
    store2 = stores.open("S2")
    fill(store2, [b"a", b"b", b"c"])
    store2.update_config(stores.config(name="S2", max_msgs=1, discard=DiscardPolicy.NEW))
    assert store2.state().messages == 3


# ---- expiry (max_age, TTL) -------------------------------------------------------------------------


def test_max_age(stores):
    store = stores.open(max_age_ns=10 * SEC)
    assert store.next_expiry() == 0
    store.store_msg(b"a", b"", b"1", T0)
    store.store_msg(b"b", b"", b"2", T0 + SEC)
    assert store.next_expiry() == T0 + 10 * SEC
    assert store.expire(T0 + 10 * SEC - 1) == []
    removed = store.expire(T0 + 10 * SEC)
    assert [(m.seq, m.subject, m.data) for m in removed] == [(1, b"a", b"1")]
    assert store.next_expiry() == T0 + 11 * SEC
    assert [m.seq for m in store.expire(T0 + 100 * SEC)] == [2]
    st = store.state()
    assert (st.messages, st.first_seq, st.last_seq, st.last_ts) == (0, 3, 2, T0 + SEC)
    assert store.next_expiry() == 0


def test_ttl_and_never(stores):
    store = stores.open(max_age_ns=10 * SEC)
    cb = []
    store.set_removed_callback(lambda seq, subj: cb.append(seq))
    store.store_msg(b"n", b"", b"never", T0, ttl_ns=-1)
    store.store_msg(b"t", b"", b"ttl", T0, ttl_ns=2 * SEC)
    store.store_msg(b"long", b"", b"ttl", T0, ttl_ns=60 * SEC)  # max_age is shorter
    store.store_msg(b"p", b"", b"plain", T0 + SEC)
    assert store.next_expiry() == T0 + 2 * SEC
    assert [m.seq for m in store.expire(T0 + 2 * SEC)] == [2]
    assert store.next_expiry() == T0 + 10 * SEC
    assert [m.seq for m in store.expire(T0 + 11 * SEC)] == [3, 4]
    assert cb == [2, 3, 4]
    assert store.expire(T0 + 10_000 * SEC) == []
    assert store.load_msg(1).data == b"never"
    assert store.next_expiry() == 0


def test_ttl_removed_message_not_expired_twice(stores):
    store = stores.open()
    store.store_msg(b"t", b"", b"", T0, ttl_ns=SEC)
    store.remove_msg(1)
    assert store.next_expiry() == 0
    assert store.expire(T0 + 5 * SEC) == []


# ---- reads -------------------------------------------------------------------------------------------


def test_load_next_last_prev(stores):
    store = stores.open()
    fill(store, [b"o.a.1", b"o.b.1", b"o.a.2", b"x", b"o.a.1", b"o.b.2"])
    assert store.load_next_msg(b">", 1).seq == 1
    assert store.load_next_msg(b"", 0).seq == 1
    assert store.load_next_msg(b"o.a.1", 2).seq == 5
    assert store.load_next_msg(b"o.a.1", 6) is None
    assert store.load_next_msg(b"o.*.1", 3).seq == 5
    assert store.load_next_msg(b"o.>", 4).seq == 5
    assert store.load_next_msg(b"nope", 1) is None
    assert store.load_next_msg(b">", 7) is None
    store.remove_msg(5)
    assert store.load_next_msg(b"o.a.1", 2) is None
    assert store.load_next_msg(b">", 5).seq == 6
    assert store.load_last_msg(b">").seq == 6
    assert store.load_last_msg(b"o.a.*").seq == 3
    assert store.load_last_msg(b"o.a.1").seq == 1
    assert store.load_last_msg(b"o.b.*", max_seq=5).seq == 2
    assert store.load_last_msg(b">", max_seq=5).seq == 4
    assert store.load_last_msg(b"zz") is None
    assert store.load_prev_msg(5).seq == 4
    assert store.load_prev_msg(4).seq == 4
    assert store.load_prev_msg(0) is None


def test_many_subjects_wildcard_scan(stores):
    store = stores.open()
    subjects = [b"m.%d" % (i % 40) for i in range(200)]
    fill(store, subjects)
    assert store.load_next_msg(b"m.*", 150).seq == 150
    assert store.num_pending(1, b"m.*") == 200
    assert store.num_pending(101, b"m.*") == 100
    assert store.num_pending(1, b"m.*", last_per_subject=True) == 40
    assert store.num_pending(199, b"m.*", last_per_subject=True) == 2
    assert len(store.subjects_state(b"m.>")) == 40


def test_num_pending_and_subject_state(stores):
    store = stores.open()
    fill(store, [b"a", b"b", b"a", b"c", b"a"])
    store.remove_msg(2)
    assert store.num_pending(1, b">") == 4
    assert store.num_pending(3, b"") == 3
    assert store.num_pending(4, b">") == 2
    assert store.num_pending(2, b"a") == 2
    assert store.num_pending(1, b"a") == 3
    assert store.num_pending(6, b"a") == 0
    assert store.num_pending(1, b">", last_per_subject=True) == 2
    assert store.num_pending(1, b"*", last_per_subject=True) == 2
    assert store.subjects_state(b"a") == {b"a": SubjectState(3, 1, 5)}
    st = store.state(subjects_filter=b">")
    assert st.subjects == {b"a": 3, b"c": 1}
    assert store.state(subjects_filter=b"c").subjects == {b"c": 1}
    store.remove_msg(1)
    store.remove_msg(5)
    assert store.subjects_state(b"a") == {b"a": SubjectState(1, 3, 3)}


def test_many_messages_compaction(stores):
    store = stores.open(max_msgs=100)
    for i in range(10_000):
        store.store_msg(b"s.%d" % (i % 7), b"", b"%d" % i, T0 + i)
    st = store.state()
    assert (st.messages, st.first_seq, st.last_seq, st.num_deleted) == (100, 9901, 10000, 0)
    assert store.load_msg(9901).data == b"9900"
    assert store.load_next_msg(b"s.3", 1).seq >= 9901
    assert store.num_pending(1, b"s.3") == sum(1 for i in range(9900, 10000) if i % 7 == 3)


# ---- durability hooks, lifecycle ------------------------------------------------------------------------


async def test_sync_resolves(stores):
    store = stores.open()
    store.store_msg(b"a", b"", b"1", T0)
    await asyncio.wait_for(store.sync(), 5)
    await asyncio.wait_for(store.sync(), 5)  # nothing new written


def test_closed_store_refuses(stores):
    store = stores.open()
    store.close()
    with pytest.raises(StoreClosedError):
        store.store_msg(b"a", b"", b"", T0)


# ---- consumer store ----------------------------------------------------------------------------------------


def test_consumer_store_incremental(stores):
    store = stores.open()
    cs = store.consumer_store("C")
    assert cs.load() == (None, ConsumerState())
    cs.save_config(b'{"durable_name":"C"}')
    cs.update_delivered(1, 10, 1, T0)
    cs.update_delivered(2, 11, 1, T0 + 1)
    cs.update_delivered(3, 12, 1, T0 + 2)
    st = cs.state()
    assert st.delivered == SequencePair(3, 12)
    assert st.pending == {10: Pending(1, T0), 11: Pending(2, T0 + 1), 12: Pending(3, T0 + 2)}
    cs.update_acks(2, 11)  # out of order: floor stays
    assert cs.state().ack_floor == SequencePair(0, 0)
    cs.update_acks(1, 10)
    assert cs.state().ack_floor == SequencePair(2, 11)
    cs.update_delivered(4, 12, 2, T0 + 5)  # redelivery of 12
    st = cs.state()
    assert st.redelivered == {12: 2}
    assert st.pending == {12: Pending(3, T0 + 5)}
    assert st.delivered == SequencePair(4, 12)
    cs.update_acks(4, 12)
    st = cs.state()
    assert st.pending == {} and st.redelivered == {}
    assert st.ack_floor == SequencePair(4, 12)
    config, loaded = cs.load()
    assert config == b'{"durable_name":"C"}'
    assert loaded == st


def test_consumer_store_update_replaces(stores):
    store = stores.open()
    cs = store.consumer_store("D")
    state = ConsumerState(SequencePair(5, 50), SequencePair(3, 30), {40: Pending(4, T0)}, {40: 3})
    cs.update(state)
    state.pending.clear()  # the store keeps its own copy
    got = cs.state()
    assert got.pending == {40: Pending(4, T0)} and got.redelivered == {40: 3}
    cs.delete()
    fresh = store.consumer_store("D")
    assert fresh.load() == (None, ConsumerState())


# ---- the Msg-Id window's source ---------------------------------------------------------------


def test_headers_since_lists_the_recent_messages_with_headers(stores):
    """`headers_since(cutoff)`: the live messages with headers at the tail stored at or after the
    cutoff, oldest first; the file store reads whole blocks for it, the answer is the same."""
    store = stores.open()
    hdr = b"NATS/1.0\r\nNats-Msg-Id: m%d\r\n\r\n"
    expected = []
    for i in range(300):
        with_headers = i % 3 != 0
        seq = store.store_msg(b"s.%d" % (i % 7), hdr % i if with_headers else b"", b"payload" * (i % 5), T0 + i * SEC)
        if with_headers and i >= 100:
            expected.append((seq, T0 + i * SEC, hdr % i))
    for seq in (150, 151, 152, 299):
        store.remove_msg(seq)
    expected = [item for item in expected if item[0] not in (150, 151, 152, 299)]
    assert store.headers_since(T0 + 100 * SEC) == expected
    assert store.headers_since(T0 + 1000 * SEC) == []
    again = stores.reopen(store)
    assert again.headers_since(T0 + 100 * SEC) == expected
    again.store_msg(b"late", hdr % 999, b"", T0 + 500 * SEC)  # buffered, not yet written out
    assert again.headers_since(T0 + 400 * SEC) == [(301, T0 + 500 * SEC, hdr % 999)]
