"""Authentication matrix: every config form x every CONNECT form, on jsedge and on nats-server.

Each cell is one raw connection: CONNECT (protocol 1, so an accepted client gets the async INFO naming
its account), then two PINGs. The transcript is either `PONG` + the account INFO + `PONG`, or
`-ERR 'Authorization Violation'` and a close; both servers must send the same bytes. The reference
cell (`side == "nats"`) checks nats-server against the expectation written here, so the table itself
is verified.
"""

from __future__ import annotations

import base64
import json

import bcrypt
import nkeys
import pytest
from helpers import Barrier, Closed, ServerProcess, normalize_transcript, run_raw

pytestmark = pytest.mark.compat

_SEED = nkeys.encode_seed(bytes(range(32)), nkeys.PREFIX_BYTE_USER)
NKEY_USER = nkeys.from_seed(bytearray(_SEED)).public_key.decode()
_SEED2 = nkeys.encode_seed(bytes(range(1, 33)), nkeys.PREFIX_BYTE_USER)
NKEY_OTHER = nkeys.from_seed(bytearray(_SEED2)).public_key.decode()
HASH = bcrypt.hashpw(b"hashed", bcrypt.gensalt(rounds=4)).decode()

CONFIGS = {
    "single": "authorization { user: u, password: p }",
    "single_bcrypt": f'authorization {{ user: u, password: "{HASH}" }}',
    "token": "authorization { token: t0k }",
    "users": f'authorization {{ users: [ {{user: a, password: pa}}, {{user: b, password: "{HASH}"}}, '
    '{user: e, password: ""} ] }',
    "accounts_nkey": "accounts { A: { users: [ {user: a, password: pa}, "
    f"{{nkey: {NKEY_USER}}} ] }}, B: {{ users: [ {{user: b, password: pb}} ] }} }}",
    "nkey_only": f"authorization {{ users: [ {{nkey: {NKEY_USER}}} ] }}",
    "no_auth_user": "authorization { users: [ {user: a, password: pa}, {user: anon, password: x} ] }\n"
    "no_auth_user: anon",
    "no_auth_account": "accounts { A: { users: [ {user: a, password: pa} ] }, "
    "B: { users: [ {user: anon, password: x} ] } }\nno_auth_user: anon",
    "no_auth_bcrypt": f'authorization {{ users: [ {{user: anon, password: "{HASH}"}} ] }}\nno_auth_user: anon',
    "no_auth_nkey": f"accounts {{ A: {{ users: [ {{nkey: {NKEY_USER}}}, {{user: a, password: pa}} ] }} }}\n"
    f"no_auth_user: {NKEY_USER}",
    "types": "authorization { users: [ {user: s, password: s, allowed_connection_types: [STANDARD]}, "
    "{user: w, password: w, allowed_connection_types: [WEBSOCKET]} ] }",
}

BAD_SIG = base64.urlsafe_b64encode(b"\x00" * 64).rstrip(b"=").decode()

CONNECTS = {
    "none": {},
    "empty_user": {"user": ""},
    "empty_all": {"user": "", "pass": "", "auth_token": "", "nkey": ""},
    "null_user": {"user": None, "pass": None},
    "user_p": {"user": "u", "pass": "p"},
    "user_wrong": {"user": "u", "pass": "x"},
    "user_nopass": {"user": "u"},
    "pass_only": {"pass": "p"},
    "hashed": {"user": "u", "pass": "hashed"},
    "hash_as_pass": {"user": "u", "pass": HASH},
    "token": {"auth_token": "t0k"},
    "token_wrong": {"auth_token": "nope"},
    "token_as_user": {"user": "t0k"},
    "token_as_pass": {"pass": "t0k"},
    "a_pa": {"user": "a", "pass": "pa"},
    "a_wrong": {"user": "a", "pass": "pb"},
    "a_token": {"user": "a", "auth_token": "pa"},
    "b_hashed": {"user": "b", "pass": "hashed"},
    "b_pb": {"user": "b", "pass": "pb"},
    "e_empty": {"user": "e", "pass": ""},
    "e_none": {"user": "e"},
    "anon": {"user": "anon", "pass": "x"},
    "anon_hashed": {"user": "anon", "pass": "hashed"},
    "anon_wrong": {"user": "anon", "pass": "y"},
    "nkey_nosig": {"nkey": NKEY_USER},
    "nkey_badsig": {"nkey": NKEY_USER, "sig": BAD_SIG},
    "nkey_notbase64": {"nkey": NKEY_USER, "sig": "***"},
    "nkey_unknown": {"nkey": NKEY_OTHER, "sig": BAD_SIG},
    "nkey_and_user": {"nkey": NKEY_USER, "user": "a", "pass": "pa"},
    "s_s": {"user": "s", "pass": "s"},
    "w_w": {"user": "w", "pass": "w"},
}

# Wrong JSON types are answered by Go's json.Unmarshal: the connection closes without a word.
TYPE_CONNECTS = {
    "user_number": b'{"user":1,"pass":"p"}',
    "pass_bool": b'{"user":"u","pass":true}',
    "token_list": b'{"auth_token":["t0k"]}',
    "nkey_object": b'{"nkey":{}}',
}

# Cells where nats-server's answer is "accepted"; every other cell is an Authorization Violation.
# The value is the account named in the connect_info INFO.
ACCEPTED = {
    ("single", "user_p"): "$G",
    ("single_bcrypt", "hashed"): "$G",
    ("token", "token"): "$G",
    ("users", "a_pa"): "$G",
    ("users", "b_hashed"): "$G",
    ("users", "e_empty"): "$G",
    ("users", "e_none"): "$G",
    ("accounts_nkey", "a_pa"): "A",
    ("accounts_nkey", "b_pb"): "B",
    ("no_auth_user", "none"): "$G",
    ("no_auth_user", "empty_user"): "$G",
    ("no_auth_user", "empty_all"): "$G",
    ("no_auth_user", "null_user"): "$G",
    ("no_auth_user", "a_pa"): "$G",
    ("no_auth_user", "anon"): "$G",
    ("no_auth_account", "none"): "B",
    ("no_auth_account", "empty_user"): "B",
    ("no_auth_account", "empty_all"): "B",
    ("no_auth_account", "null_user"): "B",
    ("no_auth_account", "a_pa"): "A",
    ("no_auth_account", "anon"): "B",
    ("no_auth_bcrypt", "anon_hashed"): "$G",
    ("no_auth_nkey", "none"): "A",
    ("no_auth_nkey", "empty_user"): "A",
    ("no_auth_nkey", "empty_all"): "A",
    ("no_auth_nkey", "null_user"): "A",
    ("no_auth_nkey", "a_pa"): "A",
    ("types", "s_s"): "$G",
    # Without nkey users configured, an nkey in the CONNECT is ignored: the users (and no_auth_user)
    # decide, as in nats-server.
    ("users", "nkey_and_user"): "$G",
    ("no_auth_user", "nkey_and_user"): "$G",
    ("no_auth_account", "nkey_and_user"): "A",
    # An nkey that is the no_auth_user needs no signature.
    ("no_auth_nkey", "nkey_nosig"): "A",
    ("no_auth_nkey", "nkey_badsig"): "A",
    ("no_auth_nkey", "nkey_notbase64"): "A",
    ("no_auth_nkey", "nkey_and_user"): "A",
}
for _config, _account in (("no_auth_user", "$G"), ("no_auth_account", "B")):
    for _name in ("nkey_nosig", "nkey_badsig", "nkey_notbase64", "nkey_unknown"):
        ACCEPTED[(_config, _name)] = _account


def _connect(body: bytes) -> bytes:
    return b"CONNECT " + body + b"\r\n"


def _json(opts: dict) -> bytes:
    body = {"verbose": False, "pedantic": False, "protocol": 1}
    body.update(opts)
    return json.dumps(body, separators=(",", ":")).encode()


def _outcome(transcript: bytes) -> str:
    """ "refused", "closed", or the account named by the connect_info INFO of an accepted client."""
    if transcript == REFUSED:
        return "refused"
    if transcript == b"<EOF>":
        return "closed"
    head, info, tail = transcript.split(b"\r\n", 2)
    assert head == b"PONG" and tail == b"PONG\r\n<OPEN>", transcript
    document = json.loads(info[5:-1])
    assert document["connect_info"] is True, transcript
    return document["remote_account"]


REFUSED = b"-ERR 'Authorization Violation'\r\n<EOF>"


def _cell(server: ServerProcess, body: bytes) -> bytes:
    out = run_raw(server, _connect(body), Barrier(pings=2, timeout=3), Closed(0.3), normalize=False)
    first_end = out.index(b"\r\n") + 2
    return normalize_transcript(out[first_end:])


@pytest.fixture(scope="module")
def servers():
    started: dict[tuple[str, str], ServerProcess] = {}
    yield started
    for srv in started.values():
        srv.cleanup()


def _server(servers, kind: str, config: str) -> ServerProcess:
    key = (kind, config)
    if key not in servers:
        servers[key] = ServerProcess(kind, config=CONFIGS[config] + "\n")
    return servers[key]


@pytest.mark.parametrize("side", ["nats", "jsedge"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_auth_matrix(servers, side: str, config: str) -> None:
    """All CONNECT forms against one config: nats-server matches the table; jsedge matches nats-server."""
    reference = _server(servers, "nats", config)
    mismatches = []
    cells = [(name, _json(opts)) for name, opts in CONNECTS.items()]
    cells += [(name, body) for name, body in TYPE_CONNECTS.items()]
    for name, body in cells:
        got_ref = _cell(reference, body)
        if side == "nats":
            if name in TYPE_CONNECTS:
                want = "closed"
            else:
                want = ACCEPTED.get((config, name), "refused")
            if _outcome(got_ref) != want:
                mismatches.append(f"{name}: nats-server sent {got_ref!r}, the table says {want}")
        else:
            got = _cell(_server(servers, "jsedge", config), body)
            if got != got_ref:
                mismatches.append(f"{name}: jsedge sent {got!r}, nats-server {got_ref!r}")
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.parametrize("config", ["accounts_nkey", "nkey_only", "no_auth_nkey"])
def test_info_carries_a_nonce_when_nkey_users_exist(servers, config: str) -> None:
    for kind in ("nats", "jsedge"):
        out = run_raw(_server(servers, kind, config), Closed(0.1), normalize=False)
        info = json.loads(out[5 : out.index(b"\r\n") - 1])
        assert len(info["nonce"]) == 15, (kind, info)


async def _nkey_logins(server: ServerProcess) -> list[str]:
    """nats-py signs the INFO nonce with a user seed: the right key gets in (into its account, with
    its permissions), another key's signature and a wrong seed do not."""
    import asyncio

    import nats
    from nats.errors import NoServersError

    out: list[str] = []
    for label, seed in (("own seed", _SEED), ("another user's seed", _SEED2)):
        errors: list[str] = []

        async def on_error(exc: Exception, errors: list[str] = errors) -> None:
            errors.append(str(exc))

        try:
            nc = await nats.connect(
                server.url, nkeys_seed_str=seed.decode(), allow_reconnect=False, error_cb=on_error, connect_timeout=2
            )
        except (NoServersError, OSError, nats.errors.Error) as exc:
            out.append(f"{label}: refused ({type(exc).__name__}) {sorted(set(errors))}")
            continue
        try:
            sub = await nc.subscribe("allowed.>")
            await nc.publish("allowed.x", b"in")
            await nc.publish("denied.x", b"no")
            await nc.flush()
            msg = await sub.next_msg(2)
            await asyncio.sleep(0.2)
            out.append(f"{label}: in, got {msg.subject} {msg.data!r}, errors {sorted(set(errors))}")
        finally:
            await nc.close()
    return out


def test_nkey_users_sign_the_nonce_as_with_nats_server(tmp_path) -> None:
    import asyncio

    config = (
        f"authorization {{ users: [ {{ nkey: {NKEY_USER}, permissions: {{ publish: "
        '"allowed.>", subscribe: "allowed.>" } } ] }\n'
    )
    results = []
    for kind in ("nats", "jsedge"):
        with ServerProcess(kind, config=config) as server:
            results.append(asyncio.run(_nkey_logins(server)))
    assert results[0] == results[1]
    assert results[1][0].startswith("own seed: in"), results[1]


def test_refused_connects_are_logged_as_by_nats_server() -> None:
    """The error line names the identity tried (`User`, `Nkey`, a redacted `Token`) after the bare
    connection prefix (the client's version and account only once it is in)."""
    import socket
    import time

    config = f"authorization {{ users: [ {{ user: a, password: pa }}, {{ nkey: {NKEY_USER} }} ] }}\n"
    connects = [
        b'CONNECT {"user":"a","pass":"x"}',
        b'CONNECT {"nkey":"%s","sig":"AAAA"}' % NKEY_USER.encode(),
        b"CONNECT {}",
        b'CONNECT {"auth_token":"zz"}',
    ]
    results = []
    for kind in ("nats", "jsedge"):
        with ServerProcess(kind, config=config) as server:
            mark = server.log_mark()
            for connect in connects:
                with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
                    sock.recv(4096)
                    sock.sendall(connect + b"\r\nPING\r\n")
                    sock.recv(4096)
            deadline = time.monotonic() + 5
            while True:
                lines = [line for line in server.log_lines()[mark:] if "authentication error" in line]
                if len(lines) >= len(connects) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            # "127.0.0.1:<port> - cid:<n> - <text>": the text and that nothing sits between
            results.append([line.split(" - ", 2)[2] for line in lines])
    assert results[0] == results[1]
    assert len(results[1]) == len(connects)
