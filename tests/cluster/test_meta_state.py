"""The meta state machine on its own (no servers): how a replica change re-places a stream's
consumers, and which server's consumer state the new consumer group continues from."""

from __future__ import annotations

import pytest

from jsedge.cluster.meta import MetaState

pytestmark = pytest.mark.timeout(10)


def _state_after_r1_to_r3() -> MetaState:
    """Stream RS on x (R1) with consumer d on x, then num_replicas 3 on [x, a, b] seeded by x."""
    state = MetaState()
    config = {"name": "RS", "num_replicas": 1, "storage": "file"}
    state.apply({"op": "stream", "account": "A", "config": config, "group": "S-R1F-1", "peers": ["x"], "created": 1})
    state.apply(
        {"op": "consumer", "account": "A", "stream": "RS", "name": "d", "config": {"durable_name": "d"}, "peers": ["x"]}
    )
    state.apply(
        {
            "op": "stream_update",
            "account": "A",
            "config": {**config, "num_replicas": 3},
            "group": "S-R3F-2",
            "peers": ["x", "a", "b"],
            "seed": "x",
            "consumer_seeds": {},
        }
    )
    return state


def _scale_to_two(state: MetaState, **extra) -> None:
    state.apply(
        {
            "op": "stream_update",
            "account": "A",
            "config": {"name": "RS", "num_replicas": 2, "storage": "file"},
            "group": "S-R2F-3",
            "peers": ["x", "a"],
            "seed": "a",  # the sealed group's leader
            **extra,
        }
    )


def test_an_r1_consumer_becomes_a_group_seeded_by_its_server() -> None:
    ca = _state_after_r1_to_r3().streams[("A", "RS")].consumers["d"]
    assert ca.peers[0] == "x" and sorted(ca.peers) == ["a", "b", "x"]
    assert ca.seed == "x" and ca.group.startswith("C-R3F-")


def test_the_consumer_continues_from_its_leader_when_the_proposer_names_it() -> None:
    state = _state_after_r1_to_r3()
    _scale_to_two(state, consumer_seeds={"d": "a"})
    ca = state.streams[("A", "RS")].consumers["d"]
    assert ca.seed == "a" and ca.peers[0] == "a" and sorted(ca.peers) == ["a", "x"]


def test_without_a_known_leader_the_consumer_continues_from_the_server_that_seeded_its_group() -> None:
    """The regression: the group made by R1 -> R3 had no leader yet when R3 -> R2 came; only x held
    the acks, and the stream's seed (a) had nothing to continue from."""
    state = _state_after_r1_to_r3()
    _scale_to_two(state, consumer_seeds={})
    ca = state.streams[("A", "RS")].consumers["d"]
    assert ca.seed == "x" and ca.peers[0] == "x"


def test_a_command_from_an_older_meta_log_keeps_the_older_rule() -> None:
    state = _state_after_r1_to_r3()
    _scale_to_two(state)
    ca = state.streams[("A", "RS")].consumers["d"]
    assert ca.seed == "a"


def test_a_named_leader_that_does_not_stay_is_not_used() -> None:
    state = _state_after_r1_to_r3()
    _scale_to_two(state, consumer_seeds={"d": "b"})
    assert state.streams[("A", "RS")].consumers["d"].seed == "x"


def test_every_replica_computes_the_same_assignment() -> None:
    one, two = _state_after_r1_to_r3(), _state_after_r1_to_r3()
    for state in (one, two):
        _scale_to_two(state, consumer_seeds={"d": "a"})
    first, second = one.streams[("A", "RS")].consumers["d"], two.streams[("A", "RS")].consumers["d"]
    assert (first.group, first.peers, first.seed) == (second.group, second.peers, second.seed)
    decoded = MetaState.decode(one.encode()).streams[("A", "RS")].consumers["d"]
    assert (decoded.group, decoded.peers, decoded.seed) == (first.group, first.peers, first.seed)
