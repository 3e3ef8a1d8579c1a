"""Differential properties of the stream command codec twins (the reference in
jsedge/jetstream/commands.py, the compiled jsedge/_speedups/commands.pyx): byte-identical encoding of
single commands and batch entries, identical decoding, identical command ends, and the same
ValueError (or the same result) on random, truncated and bit-flipped bytes, so a follower decodes a
leader's entry to the same commands whichever twin either runs."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jsedge.jetstream import commands as C


def _compiled() -> ModuleType:
    if os.environ.get("JSEDGE_NO_EXTENSIONS", "") not in ("", "0"):
        pytest.skip("JSEDGE_NO_EXTENSIONS is set: the compiled twin is not in use")
    try:
        return importlib.import_module("jsedge._speedups.commands")
    except ImportError as exc:  # a missing compiled twin is a failure, never a skip
        pytest.fail(f"compiled commands twin not importable: {exc}")


SETTINGS = settings(max_examples=300, deadline=None)

INT64 = st.integers(-(1 << 63), (1 << 63) - 1)
store_msgs = st.builds(
    C.StoreMsg,
    subject=st.binary(max_size=40),
    hdr=st.one_of(st.just(b""), st.binary(max_size=60)),
    data=st.binary(max_size=300),
    ts=st.one_of(INT64, st.integers(1_700_000_000_000_000_000, 1_800_000_000_000_000_000)),
    ttl=st.one_of(st.just(0), st.just(-1), INT64),
    msg_id=st.one_of(st.just(b""), st.binary(max_size=20)),
    rollup=st.sampled_from(["", "sub", "all", "other"]),
    seq=st.one_of(st.just(0), st.integers(1, (1 << 64) - 1)),
)


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except ValueError as exc:
        return "ValueError", str(exc)


def test_the_compiled_twin_is_the_one_in_use() -> None:
    module = _compiled()
    assert C.IMPLEMENTATION == "c"
    assert C.encode_command is module.encode_command and C.decode_batch is module.decode_batch


@SETTINGS
@given(store_msgs)
def test_one_command_encodes_to_the_same_bytes(command: C.StoreMsg) -> None:
    module = _compiled()
    assert _outcome(module.encode_command, command) == _outcome(C._encode_command_py, command)


@SETTINGS
@given(st.lists(store_msgs, max_size=12))
def test_a_batch_entry_encodes_decodes_and_splits_the_same(commands: list[C.StoreMsg]) -> None:
    module = _compiled()
    reference = _outcome(C._encode_store_batch_py, commands)
    assert _outcome(module.encode_store_batch, commands) == reference
    if reference[0] != "ok":
        return
    data = reference[1]
    decoded = module.decode_batch(data)
    assert decoded == C._decode_batch_py(data)
    assert all(type(got) is C.StoreMsg for got in decoded)
    assert [c.data for c in decoded] == [c.data for c in commands]
    assert module.command_ends(data) == C._command_ends_py(data)
    # a payload is the last len(payload) bytes of its command: the write-once locator's premise
    for command, end in zip(decoded, module.command_ends(data), strict=True):
        assert data[end - len(command.data) : end] == command.data


@SETTINGS
@given(st.lists(store_msgs, min_size=1, max_size=6), st.data())
def test_damaged_entries_get_the_reference_answer(commands: list[C.StoreMsg], draw: st.DataObject) -> None:
    module = _compiled()
    try:
        data = bytearray(C._encode_store_batch_py(commands))
    except ValueError:
        return
    how = draw.draw(st.sampled_from(["truncate", "flip", "append", "kind"]))
    if how == "truncate":
        data = data[: draw.draw(st.integers(0, len(data) - 1))]
    elif how == "flip":
        at = draw.draw(st.integers(0, len(data) - 1))
        data[at] ^= 1 << draw.draw(st.integers(0, 7))
    elif how == "append":
        data += draw.draw(st.binary(min_size=1, max_size=4))
    else:
        data[0] = draw.draw(st.integers(0, 255))
    damaged = bytes(data)
    assert _outcome(module.decode_batch, damaged) == _outcome(C._decode_batch_py, damaged)
    assert _outcome(module.command_ends, damaged) == _outcome(C._command_ends_py, damaged)


@SETTINGS
@given(st.binary(max_size=80))
def test_random_bytes_get_the_reference_answer(data: bytes) -> None:
    module = _compiled()
    for blob in (data, bytes([C.KIND_BATCH]) + data, bytes([C.KIND_BATCH, 1]) + data):
        assert _outcome(module.decode_batch, blob) == _outcome(C._decode_batch_py, blob)
        assert _outcome(module.command_ends, blob) == _outcome(C._command_ends_py, blob)


def test_what_the_compiled_twin_hands_to_the_reference() -> None:
    """Other commands, atomic batches and odd field types take the reference's path, with its
    results and errors."""
    module = _compiled()
    others = [C.SkipMsg(5, b"id", 9), C.DeleteMsg(3, False), C.PurgeMsgs(b"a.>", 4, 1), C.ExpireMsgs(7)]
    for command in others:
        assert module.encode_command(command) == C._encode_command_py(command)
    atomic = C.encode_batch([C._encode_command_py(c) for c in [C.StoreMsg(b"a", b"", b"x", 1), others[0]]], atomic=True)
    assert module.decode_batch(atomic) == C._decode_batch_py(atomic)
    odd = C.StoreMsg(b"a", b"", bytearray(b"payload"), 1)  # type: ignore[arg-type]
    assert module.encode_command(odd) == C._encode_command_py(odd)
    for bad in (C.StoreMsg(b"a", b"", b"x", 1, seq=-1), C.StoreMsg(b"a", b"", b"x", 1 << 63)):
        assert _outcome(module.encode_command, bad) == _outcome(C._encode_command_py, bad)
    # a batch holding a non-store command is refused the reference's way
    mixed = C.encode_batch([C._encode_command_py(C.StoreMsg(b"a", b"", b"x", 1)), C._encode_command_py(others[1])])
    assert _outcome(module.decode_batch, mixed) == _outcome(C._decode_batch_py, mixed)
    assert _outcome(module.decode_batch, mixed)[0] == "ValueError"
