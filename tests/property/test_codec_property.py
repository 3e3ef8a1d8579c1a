"""Differential and round-trip properties of the segment codec twins (jsedge/store/_codec_py.py and
jsedge/_speedups/codec.pyx): byte-identical encoding, identical scan results on valid streams and on
random garbage, encode/decode round trips, and detection of every single bit flip."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jsedge.store import _codec_py


def _load_c() -> ModuleType | None:
    if os.environ.get("JSEDGE_NO_EXTENSIONS", "") not in ("", "0"):
        return None
    try:
        return importlib.import_module("jsedge._speedups.codec")
    except ImportError as exc:  # a missing compiled twin is a failure, never a skip
        pytest.fail(f"compiled codec twin not importable: {exc}")


@pytest.fixture(params=["py", "c"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    if request.param == "py":
        return _codec_py
    module = _load_c()
    if module is None:
        pytest.skip("JSEDGE_NO_EXTENSIONS is set")
    return module


@pytest.fixture
def twins() -> list[ModuleType]:
    module = _load_c()
    return [_codec_py] if module is None else [_codec_py, module]


SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

I64 = st.integers(-(1 << 63), (1 << 63) - 1)
BASE_SEQ = st.integers(0, 1 << 40)
BASE_TS = st.integers(-(1 << 61), 1 << 61)
SMALL = st.binary(max_size=40)

msg_record = st.tuples(
    st.integers(0, 1 << 30),  # seq delta
    st.integers(-(1 << 40), 1 << 40),  # ts delta
    st.binary(min_size=1, max_size=20),
    st.one_of(st.just(b""), SMALL),
    st.binary(max_size=200),
    st.sampled_from([0, 0, -1, 1, 5_000_000_000, 1 << 50]),
)
record = st.one_of(
    st.tuples(st.just("msg"), msg_record),
    st.tuples(st.just("skip"), st.tuples(st.integers(0, 1 << 30), st.integers(-(1 << 40), 1 << 40))),
    st.tuples(st.just("tomb"), st.integers(0, (1 << 63) - 1)),
    st.tuples(
        st.just("state"), st.tuples(st.integers(0, 1 << 62), st.integers(0, 1 << 62), st.integers(-(1 << 61), 1 << 61))
    ),
    st.tuples(st.just("blob"), st.binary(max_size=100)),
    st.tuples(
        st.just("ref"),
        st.tuples(msg_record, st.integers(0, 1 << 26), st.integers(0, 1 << 40), st.integers(0, 2**32 - 1)),
    ),
)


def encode_all(impl: ModuleType, records: list, base_seq: int, base_ts: int) -> bytearray:
    out = bytearray()
    for kind, args in records:
        if kind == "msg":
            dseq, dts, subj, hdr, data, ttl = args
            impl.encode_msg(out, base_seq, base_ts, base_seq + dseq, base_ts + dts, subj, hdr, data, ttl)
        elif kind == "skip":
            impl.encode_skip(out, base_seq, base_ts, base_seq + args[0], base_ts + args[1])
        elif kind == "tomb":
            impl.encode_tombstone(out, args)
        elif kind == "state":
            impl.encode_state(out, *args)
        elif kind == "ref":
            (dseq, dts, subj, hdr, data, _ttl), fid, offset, crc = args
            impl.encode_msg_ref(
                out, base_seq, base_ts, base_seq + dseq, base_ts + dts, subj, hdr, len(data), fid, offset, crc
            )
        else:
            impl.encode_blob(out, args)
    return out


@SETTINGS
@given(records=st.lists(record, max_size=12), base_seq=BASE_SEQ, base_ts=BASE_TS)
def test_twins_encode_and_scan_identically(twins, records, base_seq, base_ts):
    encoded = [bytes(encode_all(impl, records, base_seq, base_ts)) for impl in twins]
    assert all(e == encoded[0] for e in encoded)
    scans = [impl.scan(encoded[0], base_seq, base_ts) for impl in twins]
    assert all((list(s[0]), s[1], s[2]) == (list(scans[0][0]), scans[0][1], scans[0][2]) for s in scans)
    entries, corrupt, valid_end = scans[0]
    assert corrupt == [] and valid_end == len(encoded[0])
    assert len(entries) == len(records) * _codec_py.FIELDS


@SETTINGS
@given(rec=msg_record, base_seq=BASE_SEQ, base_ts=BASE_TS)
def test_round_trip(impl, rec, base_seq, base_ts):
    dseq, dts, subj, hdr, data, ttl = rec
    out = bytearray(b"prefix")
    n = impl.encode_msg(out, base_seq, base_ts, base_seq + dseq, base_ts + dts, subj, hdr, data, ttl)
    assert n == len(out) - 6
    kind, seq, ts, aux, s, h, d, rec_len = impl.decode(bytes(out), 6, base_seq, base_ts)
    assert (kind, seq, ts, aux, s, h, d, rec_len) == (
        impl.KIND_MSG_TTL if ttl else impl.KIND_MSG,
        base_seq + dseq,
        base_ts + dts,
        ttl,
        subj,
        hdr,
        data,
        n,
    )
    erased = impl.erased_record(n, base_seq, base_seq + dseq)
    assert len(erased) == n
    assert impl.decode(erased, 0, base_seq, base_ts)[:2] == (impl.KIND_ERASED, base_seq + dseq)


@SETTINGS
@given(garbage=st.binary(max_size=300), base_seq=BASE_SEQ, base_ts=BASE_TS, prefix=st.lists(record, max_size=3))
def test_twins_agree_on_garbage(twins, garbage, base_seq, base_ts, prefix):
    buf = bytes(encode_all(_codec_py, prefix, base_seq, base_ts)) + garbage
    per_twin = []
    for impl in twins:
        entries, corrupt, valid_end = impl.scan(buf, base_seq, base_ts)
        results: list = [(list(entries), corrupt, valid_end)]
        for offset in range(len(buf)):
            try:
                results.append(impl.decode(buf, offset, base_seq, base_ts))
            except ValueError:
                results.append(None)
        per_twin.append(results)
    assert all(r == per_twin[0] for r in per_twin)
    assert len(per_twin[0][0][0]) >= len(prefix) * _codec_py.FIELDS  # garbage never hides the prefix


@SETTINGS
@given(rec=msg_record, neighbours=st.lists(msg_record, min_size=2, max_size=2), data=st.data())
def test_single_bit_flip_detected(impl, rec, neighbours, data):
    base_seq, base_ts = 1000, 10**18
    before = bytearray()
    impl.encode_msg(
        before, base_seq, base_ts, base_seq + neighbours[0][0], base_ts + neighbours[0][1], *neighbours[0][2:]
    )
    start = len(before)
    dseq, dts, subj, hdr, payload, ttl = rec
    impl.encode_msg(before, base_seq, base_ts, base_seq + dseq, base_ts + dts, subj, hdr, payload, ttl)
    end = len(before)
    impl.encode_msg(
        before, base_seq, base_ts, base_seq + neighbours[1][0], base_ts + neighbours[1][1], *neighbours[1][2:]
    )
    bit = data.draw(st.integers(0, (end - start) * 8 - 1))
    flipped = bytearray(before)
    flipped[start + bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ValueError):
        impl.decode(bytes(flipped), start, base_seq, base_ts)
    entries, corrupt, valid_end = impl.scan(bytes(flipped), base_seq, base_ts)
    offsets = [entries[i + 1] for i in range(0, len(entries), impl.FIELDS)]
    assert start not in offsets  # the damaged record is never returned
    assert 0 in offsets and end in offsets  # both intact neighbours survive
    assert corrupt and valid_end == len(flipped)


def test_encode_rejects_out_of_range(impl):
    out = bytearray()
    with pytest.raises(ValueError):
        impl.encode_msg(out, 10, 0, 9, 0, b"a", b"", b"")
    with pytest.raises(ValueError):
        impl.encode_tombstone(out, -1)
    with pytest.raises(ValueError):
        impl.encode_state(out, 1 << 63, 0, 0)
    assert out == bytearray()


def test_torn_tail_reports_truncation_point(impl):
    out = bytearray()
    impl.encode_msg(out, 1, 0, 1, 5, b"a", b"", b"one")
    keep = len(out)
    impl.encode_msg(out, 1, 0, 2, 6, b"a", b"", b"two")
    for cut in range(keep, len(out)):
        entries, corrupt, valid_end = impl.scan(bytes(out[:cut]), 1, 0)
        assert len(entries) == impl.FIELDS and valid_end == keep
        assert corrupt == ([(keep, cut)] if cut > keep else [])


@SETTINGS
@given(
    values=st.lists(st.sampled_from([0, 1, 7, 1000, 0xFFFFFFFF]), max_size=40),
    value=st.sampled_from([0, 1, 7, 1000, 0xFFFFFFFF, 1 << 32, -1]),
    lo=st.integers(-50, 50),
    hi=st.integers(-50, 50),
)
def test_twins_index_the_subject_id_array_identically(twins, values, value, lo, hi):
    """`index_sid` on the stores' uint32 `array('I')`: the compiled C scan answers as array.index."""
    from array import array

    arr = array("I", values)
    answers = []
    for twin in twins:
        try:
            answers.append(twin.index_sid(arr, value, lo, hi))
        except (ValueError, OverflowError, TypeError) as exc:
            answers.append(type(exc).__name__)
    try:
        expected: object = arr.index(value, lo, hi)
    except (ValueError, OverflowError, TypeError) as exc:
        expected = type(exc).__name__
    assert answers == [expected] * len(twins)


@SETTINGS
@given(rec=msg_record, fid=st.integers(0, 1 << 40), offset=st.integers(0, 1 << 62), base_seq=BASE_SEQ, base_ts=BASE_TS)
def test_reference_round_trip(impl, rec, fid, offset, base_seq, base_ts):
    dseq, dts, subj, hdr, data, _ttl = rec
    crc = impl.crc32(data)
    out = bytearray()
    n = impl.encode_msg_ref(
        out, base_seq, base_ts, base_seq + dseq, base_ts + dts, subj, hdr, len(data), fid, offset, crc
    )
    kind, seq, ts, aux, subject, header, ref, rec_len = impl.decode(bytes(out), 0, base_seq, base_ts)
    assert (kind, seq, ts, aux, subject, header, rec_len) == (
        _codec_py.KIND_MSG_REF,
        base_seq + dseq,
        base_ts + dts,
        len(data),
        subj,
        hdr,
        n,
    )
    assert impl.decode_ref(ref) == (len(data), fid, offset, crc)
    entries = impl.scan(bytes(out), base_seq, base_ts)[0]
    assert entries[_codec_py.F_AUX] == len(data)  # what the message accounts, not the reference's size


def test_malformed_reference_is_rejected(impl):
    for bad in (b"", b"\x80", b"\x05\x01", b"\x05\x01\x02\x00\x00"):
        with pytest.raises(ValueError):
            impl.decode_ref(bad)
    # a MSG_REF record whose reference does not start with a length is not a valid record
    out = bytearray()
    impl.encode_msg(out, 0, 0, 1, 1, b"a", b"", b"\xff")
    out[0] = 0xE0 | _codec_py.KIND_MSG_REF
    body = bytes(out[:-4])
    fixed = body + impl.crc32(body).to_bytes(4, "little")
    assert impl.scan(fixed, 0, 0)[0].tolist() == []
