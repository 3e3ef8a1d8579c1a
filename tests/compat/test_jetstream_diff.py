"""Differential JetStream tests: the same `$JS.API` requests and publishes (with each Nats-* header)
against jsedge and nats-server 2.15.1; replies must be equal after masking times, ids, server names and
cluster/leader fields. Each script runs on a fresh `-js -sd <tmp>` server of each kind.
"""

from __future__ import annotations

import asyncio
import json
import re

import nats
import pytest
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from tests.helpers import run_on_both

pytestmark = [pytest.mark.compat, pytest.mark.timeout(40)]

_MASK = [
    (re.compile(r'"(created|ts|first_ts|last_ts|time|now)":"[^"]*"'), r'"\1":"T"'),
    (re.compile(r'"leader":"[^"]*"'), '"leader":"L"'),
    (re.compile(r"\('Nats-Time-Stamp', '[^']*'\)"), "('Nats-Time-Stamp', 'T')"),
]


def normalize(text: str) -> str:
    for pattern, repl in _MASK:
        text = pattern.sub(repl, text)
    return text


async def run_script(url: str, script: list[tuple]) -> list[str]:
    """Each step: (subject, body[, headers]). Returns one normalized line per step."""
    nc = await nats.connect(url)
    out = []
    try:
        for step in script:
            subject, body = step[0], step[1]
            headers = step[2] if len(step) > 2 else None
            data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
            try:
                msg = await nc.request(subject, data, timeout=1.0, headers=headers)
                hdrs = sorted((msg.headers or {}).items())
                out.append(normalize(f"{subject} {hdrs} {msg.data.decode()}"))
            except NoRespondersError:
                out.append(f"{subject} no-responders")
            except NatsTimeout:
                out.append(f"{subject} timeout")
    finally:
        await nc.close()
    return out


def both(tmp_path, script: list[tuple]) -> tuple[list[str], list[str]]:
    return run_on_both(tmp_path, lambda server: run_script(server.url, script))


def assert_same(tmp_path, script: list[tuple]) -> None:
    expected, actual = both(tmp_path, script)
    mismatches = [f"nats:   {want}\njsedge: {got}" for want, got in zip(expected, actual) if want != got]
    assert not mismatches, "\n".join(mismatches)
    assert len(expected) == len(actual)


API = "$JS.API."


def test_stream_create_validation_diff(tmp_path):
    create = API + "STREAM.CREATE."
    assert_same(
        tmp_path,
        [
            (API + "INFO", b""),
            (create + "MIN", {"name": "MIN"}),
            (create + "MIN", {"name": "MIN"}),
            (create + "MIN", {"name": "MIN", "subjects": ["x"]}),
            (create + "X", {"name": "X", "bogus": 1}),
            (create + "X", {"name": "X", "max_age": "1h"}),
            (create + "X", {"name": "X", "retention": "nope"}),
            (create + "X", {"name": "X", "storage": "Memory"}),
            (create + "X", {"name": "X", "max_msgs": 1.5}),
            (create + "X", {"name": "X", "first_seq": -1}),
            (create + "X", {"name": "X", "metadata": {"a": 1}}),
            (create + "X", {"name": "X", "num_replicas": 3}),
            (create + "X", {"name": "X", "subjects": ["MIN"]}),
            (create + "X", b""),
            (create + "X", {"name": "Y"}),
            (create + "X", {"name": "X", "sealed": True}),
            (create + "X", {"name": "X", "mirror_direct": True}),
            (create + "X", {"name": "X", "max_age": 10}),
            (create + "X", {"name": "X", "max_age": -1}),
            (create + "X", {"name": "X", "max_age": 1_000_000_000, "duplicate_window": 2_000_000_000}),
            (create + "X", {"name": "X", "subjects": ["bad.x", "bad.*"]}),
            (create + "X", {"name": "X", "subjects": ["a", "a"]}),
            (create + "X", {"name": "X", "subjects": ["a..b"]}),
            (create + "X", {"name": "X", "subjects": [">"]}),
            (create + "X", {"name": "X", "subjects": ["$JS.API.x"]}),
            (create + "X", {"name": "X", "discard_new_per_subject": True}),
            (create + "X", {"name": "X", "subject_delete_marker_ttl": 500_000_000}),
            (create + "X", {"name": "X", "deny_purge": True, "allow_rollup_hdrs": True}),
            (create + "X", {"name": "X", "max_msgs": -5, "pedantic": True}),
            (create + "X", {"name": "X", "republish": {"src": ">", "dest": "X"}}),
            (create + "X", {"name": "X", "placement": {"preferred": "a"}}),
            (create + "X", {"name": "X", "num_replicas": -1}),
            (create + "X", {"name": "X", "subject_delete_marker_ttl": 2_000_000_000, "metadata": {"a": "b"}}),
            (
                create + "M",
                {
                    "name": "M",
                    "storage": "memory",
                    "max_age": 60_000_000_000,
                    "discard": "NEW",
                    "subject_transform": {"src": "m.*", "dest": "m.{{wildcard(1)}}.x"},
                    "republish": {"dest": "rp.>"},
                    "placement": {},
                    "consumer_limits": {"max_ack_pending": 5},
                    "subjects": ["m.*"],
                    "allow_direct": True,
                    "description": "d",
                    "first_seq": 7,
                },
            ),
            (API + "STREAM.NAMES", b""),
            (API + "STREAM.NAMES", b"garbage"),
            (API + "STREAM.NAMES", {"subject": "m.>"}),
            (API + "STREAM.NAMES", {"subject": "nothing"}),
            (API + "STREAM.NAMES", {"limit": 1}),
            (API + "STREAM.NAMES", {"offset": 5}),
            (API + "STREAM.LIST", b""),
            (API + "STREAM.LIST", {"subject": "nothing"}),
            (API + "INFO", b""),
            (API + "BOGUS", b""),
            (API + "STREAM.LEADER.STEPDOWN.MIN", b""),
        ],
    )


def test_publish_headers_diff(tmp_path):
    create = API + "STREAM.CREATE."
    assert_same(
        tmp_path,
        [
            (
                create + "P",
                {"name": "P", "subjects": ["p.*"], "allow_rollup_hdrs": True, "max_msg_size": 200, "storage": "memory"},
            ),
            ("p.a", b"1"),
            ("p.a", b"2", {"Nats-Msg-Id": "id1"}),
            ("p.b", b"2", {"Nats-Msg-Id": "id1"}),
            ("p.a", b"3", {"Nats-Expected-Last-Sequence": "1"}),
            ("p.a", b"3", {"Nats-Expected-Last-Sequence": "abc"}),
            ("p.a", b"3", {"Nats-Expected-Last-Sequence": "2"}),
            ("p.a", b"4", {"Nats-Expected-Last-Msg-Id": "zz"}),
            ("p.a", b"4", {"Nats-Expected-Last-Msg-Id": ""}),
            ("p.a", b"5", {"Nats-Expected-Stream": "Q"}),
            ("p.a", b"5", {"Nats-Expected-Stream": "P"}),
            ("p.c", b"6", {"Nats-Expected-Last-Subject-Sequence": "9"}),
            ("p.c", b"6", {"Nats-Expected-Last-Subject-Sequence": "0"}),
            ("p.d", b"6", {"Nats-Expected-Last-Subject-Sequence-Subject": "p.c"}),
            (
                "p.d",
                b"7",
                {"Nats-Expected-Last-Subject-Sequence": "6", "Nats-Expected-Last-Subject-Sequence-Subject": "p.*"},
            ),
            ("p.a", b"8", {"Nats-Stream-Source": "X 1 > > p.a"}),
            ("p.a", b"8", {"Nats-TTL": "1s"}),
            ("p.a", b"8", {"Nats-Rollup": "bogus"}),
            ("p.a", b"8", {"Nats-Rollup": "sub"}),
            ("p.a", b"x" * 201),
            ("p.a", b"x" * 190, {"Hdr": "vvvvvvv"}),
            ("p.a", b"dup", {"Nats-Msg-Id": "id1", "Nats-Expected-Last-Subject-Sequence": "1"}),
            (API + "STREAM.INFO.P", {"subjects_filter": ">", "deleted_details": True}),
            (API + "STREAM.INFO.P", {"subjects_filter": "p.a"}),
            (API + "STREAM.INFO.P", {"subjects_filter": "zzz"}),
            (API + "STREAM.INFO.NOPE", b""),
            (
                create + "S",
                {"name": "S", "subjects": ["s"], "deny_purge": True, "deny_delete": True, "storage": "memory"},
            ),
            ("s", b"1", {"Nats-Rollup": "all"}),
            (create + "T", {"name": "T", "subjects": ["t"], "allow_msg_ttl": True}),
            ("t", b"1", {"Nats-TTL": "0"}),
            ("t", b"1", {"Nats-TTL": "500ms"}),
            ("t", b"1", {"Nats-TTL": "abc"}),
            ("t", b"1", {"Nats-TTL": "never"}),
            ("t", b"1", {"Nats-TTL": "10"}),
            (create + "I", {"name": "I", "subjects": ["i"], "retention": "interest"}),
            ("i", b"1"),
            (API + "STREAM.INFO.I", b""),
        ],
    )


def test_purge_get_delete_diff(tmp_path):
    create = API + "STREAM.CREATE."
    script: list[tuple] = [
        (
            create + "PG",
            {"name": "PG", "subjects": ["pg.*"], "first_seq": 100, "allow_direct": True, "storage": "memory"},
        )
    ]
    for subject in ("a", "b", "a", "c", "a", "b", "a"):
        script.append(("pg." + subject, b"m", {"X": "1"} if subject == "b" else None))
    script += [
        (API + "STREAM.MSG.GET.PG", b""),
        (API + "STREAM.MSG.GET.PG", {}),
        (API + "STREAM.MSG.GET.NOPE", {"seq": 1}),
        (API + "STREAM.MSG.GET.PG", {"seq": 101}),
        (API + "STREAM.MSG.GET.PG", {"seq": 101, "no_hdr": True}),
        (API + "STREAM.MSG.GET.PG", {"seq": 1}),
        (API + "STREAM.MSG.GET.PG", {"last_by_subj": "pg.a"}),
        (API + "STREAM.MSG.GET.PG", {"last_by_subj": "pg.*"}),
        (API + "STREAM.MSG.GET.PG", {"next_by_subj": "pg.b", "seq": 102}),
        (API + "STREAM.MSG.GET.PG", {"seq": 100, "last_by_subj": "pg.a"}),
        (API + "STREAM.MSG.GET.PG", {"seq": 100, "batch": 2}),
        (API + "STREAM.MSG.GET.PG", {"seq": 100, "bogus": 2}),
        (API + "DIRECT.GET.PG", {"seq": 101}),
        (API + "DIRECT.GET.PG", {"seq": 101, "no_hdr": True}),
        (API + "DIRECT.GET.PG", {"seq": 99}),
        (API + "DIRECT.GET.PG", b""),
        (API + "DIRECT.GET.PG", b"nope"),
        (API + "DIRECT.GET.PG", {}),
        (API + "DIRECT.GET.PG", {"seq": 1, "last_by_subj": "pg.a"}),
        (API + "DIRECT.GET.PG.pg.b", b""),
        (API + "DIRECT.GET.PG.pg.b", {"seq": 1}),
        (API + "DIRECT.GET.PG.pg.zz", b""),
        (API + "DIRECT.GET.NOPE", {"seq": 1}),
        (API + "DIRECT.GET.PG", {"seq": 101}, {"Nats-Required-Api-Level": "9"}),
        (API + "STREAM.INFO.PG", b"", {"Nats-Required-Api-Level": "9"}),
        (API + "STREAM.MSG.DELETE.PG", b""),
        (API + "STREAM.MSG.DELETE.PG", {"seq": 104}),
        (API + "STREAM.MSG.DELETE.PG", {"seq": 104}),
        (API + "STREAM.MSG.DELETE.PG", {"seq": 105, "no_erase": True}),
        (API + "STREAM.PURGE.PG", {"seq": 1, "keep": 1}),
        (API + "STREAM.PURGE.PG", {"filter": "pg.a", "keep": 1}),
        (API + "STREAM.INFO.PG", {"deleted_details": True}),
        (API + "STREAM.PURGE.PG", {"seq": 200}),
        (API + "STREAM.INFO.PG", b""),
        ("pg.a", b"after"),
        (API + "STREAM.PURGE.NOPE", b""),
        (API + "STREAM.DELETE.PG", b"x"),
        (API + "STREAM.DELETE.PG", b"{}"),
        (API + "STREAM.DELETE.PG", b""),
        (API + "STREAM.DELETE.PG", b""),
    ]
    assert_same(tmp_path, script)


def test_update_rules_diff(tmp_path):
    create, update = API + "STREAM.CREATE.", API + "STREAM.UPDATE."
    base = {"name": "U", "subjects": ["u"], "storage": "memory"}
    assert_same(
        tmp_path,
        [
            (create + "U", base),
            (create + "O", {"name": "O", "subjects": ["o.>"]}),
            (update + "NOPE", {"name": "NOPE"}),
            (update + "U", {"name": "V", "subjects": ["u"]}),
            (update + "U", {**base, "storage": "memory"}),
            (update + "U", {**base, "retention": "workqueue"}),
            (update + "U", {**base, "retention": "interest"}),
            (update + "U", {**base, "retention": "limits", "subjects": ["o.x"]}),
            (update + "U", {**base, "deny_delete": True}),
            (update + "U", {**base, "deny_delete": False}),
            (update + "U", {**base, "deny_delete": True, "allow_msg_ttl": True}),
            (update + "U", {**base, "deny_delete": True, "allow_msg_ttl": False}),
            (update + "U", {**base, "deny_delete": True, "allow_msg_ttl": True, "first_seq": 500}),
            (update + "U", {**base, "deny_delete": True, "allow_msg_ttl": True, "sealed": True}),
            (update + "U", {**base, "deny_delete": True, "allow_msg_ttl": True, "sealed": False}),
            ("u", b"x"),
            (API + "STREAM.PURGE.U", b""),
            (API + "STREAM.MSG.DELETE.U", {"seq": 1}),
        ],
    )


def test_file_storage_accounting_diff(tmp_path):
    create = API + "STREAM.CREATE."
    assert_same(
        tmp_path,
        [
            (create + "F", {"name": "F", "subjects": ["f.*"], "max_bytes": 200, "discard": "new"}),
            ("f.a", b"0123456789"),
            ("f.b", b"0123456789", {"Nats-Rollup": "x"}),
            ("f.b", b"0123456789", {"X": "y"}),
            ("f.c", b"x" * 150),
            (API + "STREAM.INFO.F", b""),
            (API + "INFO", b""),
        ],
    )


async def _advisory_script(url: str) -> list[str]:
    nc = await nats.connect(url)
    try:
        sub = await nc.subscribe("$JS.EVENT.ADVISORY.>")
        stream = {"name": "S", "subjects": ["s.>"]}
        for subject, body in (
            (API + "STREAM.CREATE.S", stream),
            (API + "STREAM.CREATE.S", stream),  # the same again: no second advisory
            (API + "STREAM.UPDATE.S", {**stream, "max_msgs": 5}),
            (API + "STREAM.UPDATE.S", {**stream, "max_msgs": 5}),
            (API + "STREAM.UPDATE.S", {**stream, "storage": "memory"}),  # refused: no advisory
            (API + "CONSUMER.CREATE.S.c", {"stream_name": "S", "config": {"durable_name": "c"}}),
            (API + "STREAM.PURGE.S", None),
            (API + "STREAM.DELETE.S", None),
            (API + "STREAM.DELETE.S", None),
        ):
            await nc.request(subject, json.dumps(body).encode() if body else b"", timeout=2)
        out = []
        # nats-server sends its advisories from a queue: wait (with a deadline) for the last one,
        # the stream's deletion, then drain whatever else comes within half a second
        deadline = asyncio.get_running_loop().time() + 10
        deleted = False
        while True:
            wait = 0.5 if deleted else max(0.1, deadline - asyncio.get_running_loop().time())
            try:
                msg = await sub.next_msg(wait)
            except NatsTimeout:
                break
            deleted = deleted or msg.subject == "$JS.EVENT.ADVISORY.STREAM.DELETED.S"
            event = json.loads(msg.data)
            if event["type"].endswith("api_audit"):
                out.append(f"{msg.subject} {event['subject']}")
                continue
            kept = {k: v for k, v in event.items() if k not in ("id", "timestamp")}
            out.append(f"{msg.subject} {json.dumps(kept)}")
        return out
    finally:
        await nc.close()


def test_stream_and_consumer_action_advisories_diff(tmp_path):
    """`$JS.EVENT.ADVISORY.STREAM.CREATED/UPDATED/DELETED` and the consumer ones, in nats-server's
    order and shape, one per successful action."""
    results = run_on_both(tmp_path, lambda server: _advisory_script(server.url))
    # the audit events may interleave with the others differently, and nats-server queues its
    # audits asynchronously (seen out of request order once): compare the actions in order and
    # the audits as a multiset
    audits = [sorted(line for line in out if "ADVISORY.API" in line) for out in results]
    actions = [[line for line in out if "ADVISORY.API" not in line] for out in results]
    assert audits[0] == audits[1]
    assert actions[0] == actions[1]
    assert len(actions[0]) == 6, actions[0]  # create, 2 updates, consumer create/delete, delete
