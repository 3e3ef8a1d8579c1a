"""Stream commands: the byte encoding round-trips and rejects garbage with ValueError only, and one
command log replayed into a memory stream and a file stream gives identical state — the property
replicated streams rely on (every replica applies the same encoded commands through `apply()`)."""

from __future__ import annotations

import random
import types
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jsedge.jetstream.commands import (
    DeleteMsg,
    ExpireMsgs,
    PurgeMsgs,
    SkipMsg,
    StoreMsg,
    UpdateConfig,
    decode_batch,
    decode_command,
    encode_batch,
    encode_command,
)
from jsedge.jetstream.models import StreamConfig
from jsedge.jetstream.stream import Stream, store_config
from jsedge.store.base import DiscardNewError
from jsedge.store.filestore import FileStore
from jsedge.store.memstore import MemStore

pytestmark = pytest.mark.timeout(120)

subjects = st.sampled_from([b"a", b"a.b", b"orders.new", b"x.y.z", b"\xc3\xa9t\xc3\xa9"])
blobs = st.binary(max_size=64)
int64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)


def _config(**fields) -> StreamConfig:
    config = StreamConfig(name="S", subjects=[">"], **fields)
    config.pedantic = False
    return config


def _stores(rollups: list[str], min_seq: int):
    """StoreMsg commands (a batch entry holds those without a rollup and with a stated sequence)."""
    return st.builds(
        StoreMsg,
        subjects,
        st.one_of(st.just(b""), st.just(b"NATS/1.0\r\nA: b\r\n\r\n")),
        blobs,
        int64,
        st.integers(min_value=-1, max_value=1 << 40),
        st.one_of(st.just(b""), blobs),
        st.sampled_from(rollups),
        st.integers(min_value=min_seq, max_value=1 << 62),
    )


commands = st.one_of(
    _stores(["", "sub", "all"], 0),
    st.builds(SkipMsg, int64, st.one_of(st.just(b""), blobs), st.integers(min_value=0, max_value=1 << 62)),
    st.builds(DeleteMsg, st.integers(min_value=0, max_value=1 << 62), st.booleans()),
    st.builds(
        PurgeMsgs,
        st.one_of(st.none(), subjects),
        st.integers(min_value=0, max_value=1 << 40),
        st.integers(min_value=0, max_value=1 << 40),
    ),
    st.builds(ExpireMsgs, int64),
)


@given(commands)
@settings(max_examples=400, deadline=None)
def test_round_trip(command) -> None:
    assert decode_command(encode_command(command)) == command


store_commands = _stores([""], 1)


@given(st.lists(store_commands, max_size=8))
@settings(max_examples=200, deadline=None)
def test_batch_round_trip(batch) -> None:
    """A replicated stream's batch entry: several stored messages in one Raft entry."""
    assert decode_batch(encode_batch([encode_command(c) for c in batch])) == batch


@given(st.binary(max_size=80))
@settings(max_examples=800, deadline=None)
def test_batch_garbage_is_a_value_error(data: bytes) -> None:
    try:
        decode_batch(b"\x07" + data)
    except ValueError:
        pass


def test_a_batch_holds_only_stored_messages() -> None:
    with pytest.raises(ValueError):
        decode_batch(encode_batch([encode_command(DeleteMsg(3))]))
    with pytest.raises(ValueError):
        decode_batch(encode_command(StoreMsg(b"a", b"", b"x", 1)))  # a plain command is no batch
    with pytest.raises(ValueError):
        decode_command(encode_batch([]))  # nor a batch a plain command


def test_config_round_trip() -> None:
    command = UpdateConfig(_config(max_msgs=10, duplicate_window=5_000_000_000, description="d"))
    decoded = decode_command(encode_command(command))
    assert isinstance(decoded, UpdateConfig)
    assert decoded.config.max_msgs == 10 and decoded.config.description == "d"
    assert decoded.config.subjects == [">"]


@given(st.binary(max_size=80))
@settings(max_examples=1500, deadline=None)
def test_garbage_is_a_value_error(data: bytes) -> None:
    try:
        decode_command(data)
    except ValueError:
        pass


@given(commands, st.data())
@settings(max_examples=600, deadline=None)
def test_mutations_are_value_errors(command, data) -> None:
    encoded = bytearray(encode_command(command))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and encoded:
            i = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
            encoded[i] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
        elif action == "cut":
            del encoded[data.draw(st.integers(min_value=0, max_value=len(encoded))) :]
        else:
            encoded.insert(data.draw(st.integers(min_value=0, max_value=len(encoded))), data.draw(st.integers(0, 255)))
    try:
        decode_command(bytes(encoded))
    except ValueError:
        pass


# ------------------------------------------------------------------------------------------------
# one command log, two stores


def _stream(store, config: StreamConfig) -> Stream:
    """A stream with nothing around it: apply() needs no server (it is pure)."""
    host = types.SimpleNamespace(server=types.SimpleNamespace(loop=None, logger=None), account=None, domain="")
    return Stream(host, config, store, created=0)


def _random_log(rng: random.Random, length: int) -> list:
    log: list = []
    ts = 1_700_000_000_000_000_000
    msg_ids = [b"", b"", b"id-1", b"id-2", b"id-3"]
    for _ in range(length):
        ts += rng.randrange(1, 2_000_000_000)
        roll = rng.random()
        if roll < 0.6:
            subject = rng.choice([b"a", b"a.b", b"c.d", b"c.e", b"f"])
            hdr = rng.choice([b"", b"NATS/1.0\r\nNats-Msg-Id: x\r\n\r\n"])
            ttl = rng.choice([0, 0, 0, 5, -1])
            rollup = rng.choice(["", "", "", "", "sub", "all"])
            log.append(
                StoreMsg(subject, hdr, rng.randbytes(rng.randrange(0, 40)), ts, ttl, rng.choice(msg_ids), rollup)
            )
        elif roll < 0.68:
            log.append(SkipMsg(ts, rng.choice(msg_ids)))
        elif roll < 0.8:
            log.append(DeleteMsg(rng.randrange(1, 80), rng.random() < 0.5))
        elif roll < 0.86:
            log.append(PurgeMsgs(rng.choice([None, b"a", b"c.*"]), rng.choice([0, 0, rng.randrange(1, 60)]), 0))
        elif roll < 0.9:
            log.append(PurgeMsgs(rng.choice([None, b"c.>"]), 0, rng.randrange(0, 5)))
        elif roll < 0.95:
            log.append(ExpireMsgs(ts))
        else:
            log.append(
                UpdateConfig(
                    _config(
                        max_msgs=rng.choice([-1, 20, 50]),
                        max_msgs_per_subject=rng.choice([-1, 3]),
                        max_age=rng.choice([0, 30_000_000_000]),
                        discard=rng.choice(["old", "new"]),
                        allow_msg_ttl=True,
                        allow_rollup_hdrs=True,
                        duplicate_window=60_000_000_000,
                    )
                )
            )
    return log


def _replay(stream: Stream, log: list) -> list:
    results = []
    for command in log:
        decoded = decode_command(encode_command(command))
        try:
            result = stream.apply(decoded)
        except DiscardNewError as exc:
            result = ("discard-new", exc.reason)
        if isinstance(result, list):
            result = [(m.seq, m.subject) for m in result]
        results.append(result)
    return results


def _contents(stream: Stream) -> list:
    state = stream.store.state(deleted_details=True)
    # (bytes are not compared: memory and file stores size a message differently, as nats-server's)
    out: list = [(state.messages, state.first_seq, state.last_seq, state.last_ts, tuple(state.deleted or ()))]
    seq = state.first_seq
    while True:
        msg = stream.store.load_next_msg(b">", seq)
        if msg is None:
            break
        out.append((msg.seq, msg.subject, msg.hdr, msg.data, msg.ts))
        seq = msg.seq + 1
    out.append(sorted(stream.dedup.items()))
    out.append(stream.last_msg_id)
    return out


@pytest.mark.parametrize("seed", range(25))
def test_one_log_gives_one_state_in_memory_and_on_file(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    config = _config(allow_msg_ttl=True, allow_rollup_hdrs=True, duplicate_window=60_000_000_000)
    log = _random_log(rng, 300)
    memory = _stream(MemStore(store_config(config)), config)
    file_store = FileStore(str(tmp_path / "s"), store_config(config), sync_policy="interval", sync_interval=120.0)
    on_file = _stream(file_store, config)
    assert _replay(memory, log) == _replay(on_file, log)
    assert _contents(memory) == _contents(on_file)
    # and the file store comes back from disk in the same state
    file_store.close()
    reopened = _stream(
        FileStore(str(tmp_path / "s"), store_config(on_file.config), sync_policy="interval", sync_interval=120.0),
        on_file.config,
    )
    assert _contents(reopened)[:-2] == _contents(memory)[:-2]
    reopened.store.close()


def test_a_stated_sequence_already_taken_must_hold_that_message() -> None:
    """A replayed StoreMsg (its sequence is stored already: a restart replays the Raft log) is
    answered with its sequence; one whose sequence holds another message (a leader predicted a
    sequence already taken) is refused, never acknowledged as if stored."""
    stream = _stream(MemStore(store_config(_config())), _config())
    first = StoreMsg(b"a", b"", b"one", 1_000, 0, b"", "", 1)
    assert stream.apply(first) == 1
    assert stream.apply(StoreMsg(b"a", b"", b"two", 2_000, 0, b"", "", 2)) == 2
    assert stream.apply(first) == 1  # the replay
    with pytest.raises(DiscardNewError, match="sequence mismatch"):
        stream.apply(StoreMsg(b"b", b"", b"three", 3_000, 0, b"", "", 1))
    assert stream.apply(DeleteMsg(1, False)) is not None
    assert stream.apply(StoreMsg(b"b", b"", b"three", 3_000, 0, b"", "", 1)) == 1  # gone: cannot tell
    assert stream.store.state().messages == 1
