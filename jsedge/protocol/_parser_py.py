"""Client-protocol parser, pure-Python reference twin (layer 1).

Turns the bytes a client sends into calls on a handler, byte-exact with nats-server 2.15.1's
`client.parse()` (spec/protocol.md §1, §3, §13). The compiled twin `jsedge/_speedups/parser.pyx`
must behave identically (tests/property/test_parser_property.py holds both to that). Import the
selected twin through `jsedge.protocol.parser`.

Interface::

    p = Parser(core, handler, max_control_line=4096)
    p.feed(data)        # any split of the stream gives the same calls
    p.closed            # True once a protocol error was reported

`core` is a `ClientCore` (jsedge.routing.sublist); the parser reads `core.fast_pub`, `core.headers`,
`core.max_payload` and `core.closed`. Calls made, in stream order:

* complete PUB/HPUB: `deliver(core, subject, reply, hdr_len, msg)` when `core.fast_pub`, else
  `handler.proto_pub_arg(subject)` as soon as the control line is accepted (nats-server answers a
  pedantic subject error before it reads the payload) and `handler.proto_pub(subject, reply,
  hdr_len, msg)` once the payload is complete. `reply` is b"" when absent; `hdr_len` is -1
  for PUB; `msg` is headers + payload;
* `handler.proto_sub(subject, queue_or_None, sid)`, `handler.proto_unsub(sid, max_or_None)` (an
  unparsable max is 0), `handler.proto_connect(arg)`, `handler.proto_info(arg)` (raw text after
  the op; the handler parses the JSON), `handler.proto_ping()`, `handler.proto_pong()`,
  `handler.proto_client_err(arg)` (client sent -ERR); a client `+OK` is ignored;
* `handler.proto_error(key)`, key of `jsedge.errors.PARSER_ERRORS`: "unknown_op",
  "max_control_line", "max_payload" or "silent" (argument errors nats-server closes on without
  -ERR). The parser is then closed and ignores all further input, even the rest of the buffer.

After every handler call or deliver, a `core.closed` that became true stops the parse; a closed
core makes `feed()` a no-op.

Framing, as nats-server does it (verified on the 2.15.1 binary where the spec is silent):

* Op names are case-insensitive and rejected at the first byte that cannot continue one (`X`,
  `PUBX`, and for a client `M`, `R`, `A`, `L` at once). PUB, HPUB, SUB, UNSUB, -ERR (and HMSG) need
  a space or TAB right after the name (`UNSUB\\r\\n` is unknown_op); CONNECT and INFO do not
  (`CONNECT{}` works). PING, PONG and +OK ignore everything up to LF (`PINGxyz\\n`, `+OKAY\\n`).
* After the name, spaces/TABs are skipped; the next byte, whatever it is (even CR or LF), starts
  the argument, which runs to the next LF. If a CR occurs in the argument after its first byte, the
  byte before the LF is dropped (nats-server's sticky `drop` flag: normally the CR of CRLF; in
  `PUB foo 0\\rX\\n` it drops `X`). So `CONNECT\\r\\n` passes the argument b"\\r" (the handler's
  JSON parse fails: silent close, as nats-server) and `PUB \\nfoo 0` publishes to "\\nfoo".
* Max control line: the argument (after the op and its separators, without the dropped byte) may
  be `max_control_line` bytes; one more is "max_control_line", checked when the line completes and
  also at the end of every `feed()` while the line is still incomplete. PING junk is not limited
  (and never buffered).
* PUB/HPUB split arguments on space/TAB only (a CR inside a subject is kept: nats-server delivers
  `MSG foo\\r1 ...`); SUB/UNSUB also split on CR/LF. Sizes are 1-9 ASCII digits (nats-server's
  parseSize: `0000000001` fails, `000000001` works); anything else is a silent close.
* PUB: 2 or 3 args, else silent; bad size silent; size > max_payload -> "max_payload" (payload
  not read; a negative core.max_payload means no limit). HPUB: silent if the client did not
  negotiate headers, 3 or 4 args, bad header or total size, header size > total; then the total
  size against max_payload. SUB: 2 or 3 args; UNSUB: 1 or 2; otherwise silent.
* The payload must be followed by exactly CR LF; the first wrong byte is "unknown_op".
* HMSG from a client is "unknown_op" once its control line is complete (after the max control
  line check). nats-server itself errors there only when its read ends right after the line, and
  silently drops a `HMSG ...\\r\\n\\r\\n` that arrives in one read; we pick the split-invariant
  reading.

Imports: nothing of the server; for the fused fast path only, `deliver` of the pure-Python sublist
twin (the compiled parser cimports the compiled one).
"""

from __future__ import annotations

from typing import Any

from jsedge.routing._sublist_py import deliver as _deliver
from jsedge.routing._sublist_py import deliver_as as _deliver_as
from jsedge.subjects import js_deliver_split

__all__ = ["Parser"]

# ---- parser states ---------------------------------------------------------------------------
_START = 0  # expecting (more of) an op name; `_op_prefix` holds what was matched so far
_SEP = 1  # op name complete, one space/TAB required
_SPC = 2  # skipping spaces/TABs before the argument
_ARG = 3  # inside the argument; `_arg` holds the bytes of an incomplete line
_SKIP = 4  # PING/PONG/+OK: ignoring everything up to LF
_PAYLOAD = 5  # collecting `_size` payload bytes into `_msg`
_END_R = 6  # payload complete, CR required
_END_N = 7  # CR seen, LF required

# ---- ops -------------------------------------------------------------------------------------
OP_PUB = 1
OP_HPUB = 2
OP_SUB = 3
OP_UNSUB = 4
OP_CONNECT = 5
OP_INFO = 6
OP_ERR = 7
OP_HMSG = 8
OP_PING = 9
OP_PONG = 10
OP_OK = 11
# route protocol (a parser made with route=True)
OP_RSUB = 12
OP_RUNSUB = 13
OP_LSUB = 14
OP_LUNSUB = 15
OP_RMSG = 16
OP_LMSG = 17

#: Every op name a client may send (upper case), plus HMSG which is read then rejected.
KEYWORDS: dict[bytes, int] = {
    b"PUB": OP_PUB,
    b"HPUB": OP_HPUB,
    b"SUB": OP_SUB,
    b"UNSUB": OP_UNSUB,
    b"CONNECT": OP_CONNECT,
    b"INFO": OP_INFO,
    b"-ERR": OP_ERR,
    b"HMSG": OP_HMSG,
    b"PING": OP_PING,
    b"PONG": OP_PONG,
    b"+OK": OP_OK,
}
#: The ops a route speaks (nats-server's route protocol; HMSG is the routed header message).
ROUTE_KEYWORDS: dict[bytes, int] = {
    b"RS+": OP_RSUB,
    b"RS-": OP_RUNSUB,
    b"LS+": OP_LSUB,
    b"LS-": OP_LUNSUB,
    b"RMSG": OP_RMSG,
    b"LMSG": OP_LMSG,
    b"HMSG": OP_HMSG,
    b"CONNECT": OP_CONNECT,
    b"INFO": OP_INFO,
    b"-ERR": OP_ERR,
    b"PING": OP_PING,
    b"PONG": OP_PONG,
    b"+OK": OP_OK,
}
_NEEDS_SEP = frozenset(
    (OP_PUB, OP_HPUB, OP_SUB, OP_UNSUB, OP_ERR, OP_HMSG, OP_RSUB, OP_RUNSUB, OP_LSUB, OP_LUNSUB, OP_RMSG, OP_LMSG)
)
_SKIPS = frozenset((OP_PING, OP_PONG, OP_OK))


def _prefix_table(keywords: dict[bytes, int]) -> dict[bytes, int]:
    """Upper-case prefix -> op (0 while incomplete). A prefix not in here is an unknown op."""
    table: dict[bytes, int] = {}
    for keyword, op in keywords.items():
        for k in range(1, len(keyword)):
            table.setdefault(keyword[:k], 0)
        table[keyword] = op
    return table


_PREFIX = _prefix_table(KEYWORDS)
_ROUTE_PREFIX = _prefix_table(ROUTE_KEYWORDS)

#: The common op heads, matched with one slice + dict lookup instead of the byte-wise trie walk.
_FAST4: dict[bytes, int] = {}
for _head, _op in ((b"PUB", OP_PUB), (b"SUB", OP_SUB)):
    for _name in (_head, _head.lower()):
        for _sep in (b" ", b"\t"):
            _FAST4[_name + _sep] = _op

#: SUB/UNSUB split on CR/LF too (nats-server's splitArg); map them and TAB to space.
_SUB_WS = bytes.maketrans(b"\t\r\n", b"   ")

_CR = 13
_LF = 10


def parse_size(b: bytes) -> int:
    """nats-server's parseSize: 1 to 9 ASCII digits, else -1."""
    if 0 < len(b) <= 9 and b.isdigit():
        return int(b)
    return -1


def _split_pub(arg: bytes) -> list[bytes]:
    """PUB/HPUB arguments: split on runs of space/TAB only."""
    parts = arg.split(b" ")
    if b"" in parts or b"\t" in arg:
        parts = [p for p in arg.replace(b"\t", b" ").split(b" ") if p]
    return parts


def _split_sub(arg: bytes) -> list[bytes]:
    """SUB/UNSUB arguments: split on runs of space/TAB/CR/LF."""
    return [p for p in arg.translate(_SUB_WS).split(b" ") if p]


def _routed_args(args: list[bytes], header: bool) -> tuple[bytes, list[bytes] | None, int, int] | None:
    """(reply, queues, header size, total size) of `RMSG`/`HMSG` arguments after the origin:
    `<account> <subject> [+ <reply> <queue>… | | <queue>… | <reply>] [<hdr>] <size>`; None when
    nats-server would refuse them."""
    extra = 1 if header else 0
    count = len(args)
    if count < 3 + extra:
        return None
    queues: list[bytes] | None = None
    if count == 3 + extra:
        reply = b""
    elif count == 4 + extra:
        reply = args[2]
    else:
        marker = args[2]
        if marker == b"+":
            reply = args[3]
            queues = args[4 : count - 1 - extra]
        elif marker == b"|":
            reply = b""
            queues = args[3 : count - 1 - extra]
        else:
            return None
    size = parse_size(args[-1])
    hdr = parse_size(args[-2]) if header else -1
    if size < 0 or (header and (hdr < 0 or hdr > size)):
        return None
    return reply, queues, hdr, size


def _arg_len(pending: bytes | bytearray) -> int:
    """Length an incomplete argument counts for the control-line limit (after the sticky drop)."""
    return len(pending) - (1 if pending.find(b"\r", 1) >= 0 else 0)


def _tracked(reply: bytes | None) -> bool:
    """A service import's reply of a request sampled for latency tracking (`….T`): a routed
    message with one takes the handler's path (nats-server's isTrackedReply)."""
    return reply is not None and len(reply) > 4 and reply.endswith(b".T")


def _reserved(subject: bytes, reply: bytes) -> bool:
    """Reserved subjects and reply prefixes (spec/protocol.md §8.5) always take the checked path."""
    return subject.startswith((b"$NRG.", b"_GR_.")) or (
        bool(reply) and reply.startswith((b"$JS.ACK.", b"_R_.", b"_GR_."))
    )


class Parser:
    """Incremental client-protocol parser; see the module docstring for the calls it makes."""

    __slots__ = (
        "_core",
        "_handler",
        "_mcl",
        "_closed",
        "_state",
        "_op",
        "_op_prefix",
        "_arg",
        "_msg",
        "_size",
        "_hdr",
        "_subject",
        "_reply",
        "_route",
        "_prefixes",
        "_account",
        "_origin",
        "_queues",
        "_leaf",
    )

    def __init__(
        self,
        core: Any,
        handler: Any,
        max_control_line: int = 4096,
        route: bool = False,
        leaf_account: bytes | None = None,
    ) -> None:
        self._core = core
        self._handler = handler
        self._mcl: int = max_control_line
        self._closed: bool = False
        self._state: int = _START
        self._op: int = 0
        self._op_prefix: bytes = b""
        self._arg: bytearray = bytearray()  # incomplete control line (bounded by mcl + 1)
        self._msg: bytearray | None = None  # incomplete payload (bounded by max_payload)
        self._size: int = 0
        self._hdr: int = -1
        self._subject: bytes = b""
        self._reply: bytes = b""
        #: A route's parser: route ops (RS+, RMSG, ...) instead of the client's.
        #: A leaf connection's parser (`leaf_account` = the account it is bound to): the route
        #: ops, with `LMSG`/`HMSG` carrying no origin and no account (`LMSG <subject> ...`).
        self._leaf = leaf_account is not None
        route = route or self._leaf
        self._route = route
        self._prefixes = _ROUTE_PREFIX if route else _PREFIX
        self._account: bytes = leaf_account or b""
        self._origin: bytes | None = None
        self._queues: list[bytes] | None = None

    @property
    def closed(self) -> bool:
        """True once a protocol error was reported; all further input is ignored."""
        return self._closed

    # ------------------------------------------------------------------------------------------
    def _fail(self, key: str) -> None:
        self._closed = True
        self._arg = bytearray()
        self._msg = None
        self._handler.proto_error(key)

    def _publish(self, msg: bytes) -> None:
        core = self._core
        if self._route:
            routed = core.routed_sublists
            sublist = routed.get(self._account) if routed is not None and self._origin is None else None
            if (
                sublist is not None
                and core.fast_pub
                and (self._hdr <= 0 or msg.find(b"Nats-Trace-", 0, self._hdr) < 0)
                and not _tracked(self._reply)
            ):
                subject, reply = self._subject, self._reply
                shown = subject
                if reply:
                    at = js_deliver_split(reply)
                    if at >= 0:  # a JetStream delivery: shown with the stored subject
                        shown, reply = reply[at + 1 :], reply[:at]
                _deliver_as(sublist, core, subject, shown, reply, self._hdr, msg, self._queues)
            else:
                self._handler.proto_routed(
                    self._origin, self._account, self._subject, self._reply, self._hdr, msg, self._queues
                )
            return
        if (
            core.fast_pub
            and not _reserved(self._subject, self._reply)
            and (self._hdr <= 0 or msg.find(b"Nats-Trace-", 0, self._hdr) < 0)  # traced: the slow path
        ):
            _deliver(core, self._subject, self._reply, self._hdr, msg)
        else:
            self._handler.proto_pub(self._subject, self._reply, self._hdr, msg)

    def _control(self, arg: bytes) -> bool:
        """Act on a complete control line of op `_op`. False when parsing must stop.

        For PUB/HPUB it only validates and records subject/reply/sizes; the caller reads the
        payload. The state is set before any handler call so a re-entrant close sees it sane.
        """
        if len(arg) > self._mcl:
            self._fail("max_control_line")
            return False
        op = self._op
        core = self._core
        if self._route:
            return self._route_control(op, arg)
        if op == OP_PUB:
            args = _split_pub(arg)
            nargs = len(args)
            if nargs == 2:
                reply = b""
            elif nargs == 3:
                reply = args[1]
            else:
                self._fail("silent")
                return False
            size = parse_size(args[-1])
            if size < 0:
                self._fail("silent")
                return False
            max_payload = core.max_payload
            if 0 <= max_payload < size:
                self._fail("max_payload")
                return False
            self._subject = args[0]
            self._reply = reply
            self._size = size
            self._hdr = -1
            self._state = _PAYLOAD
            if not core.fast_pub:
                self._handler.proto_pub_arg(self._subject)
            return True
        if op == OP_HPUB:
            if not core.headers:
                self._fail("silent")
                return False
            args = _split_pub(arg)
            nargs = len(args)
            if nargs == 3:
                reply = b""
            elif nargs == 4:
                reply = args[1]
            else:
                self._fail("silent")
                return False
            hdr = parse_size(args[-2])
            size = parse_size(args[-1])
            if hdr < 0 or size < 0 or hdr > size:
                self._fail("silent")
                return False
            max_payload = core.max_payload
            if 0 <= max_payload < size:
                self._fail("max_payload")
                return False
            self._subject = args[0]
            self._reply = reply
            self._size = size
            self._hdr = hdr if hdr > 0 else -1  # an empty header block is no header (nats-server: MSG)
            self._state = _PAYLOAD
            if not core.fast_pub:
                self._handler.proto_pub_arg(self._subject)
            return True
        self._state = _START
        if op == OP_SUB:
            args = _split_sub(arg)
            if len(args) == 2:
                self._handler.proto_sub(args[0], None, args[1])
            elif len(args) == 3:
                self._handler.proto_sub(args[0], args[1], args[2])
            else:
                self._fail("silent")
                return False
        elif op == OP_UNSUB:
            args = _split_sub(arg)
            if len(args) == 1:
                self._handler.proto_unsub(args[0], None)
            elif len(args) == 2:
                self._handler.proto_unsub(args[0], max(parse_size(args[1]), 0))
            else:
                self._fail("silent")
                return False
        elif op == OP_CONNECT:
            self._handler.proto_connect(arg)
        elif op == OP_INFO:
            self._handler.proto_info(arg)
        elif op == OP_ERR:
            self._handler.proto_client_err(arg)
        else:  # OP_HMSG: a server-only op
            self._fail("unknown_op")
            return False
        return not core.closed

    def _route_control(self, op: int, arg: bytes) -> bool:
        """A complete control line of the route protocol (nats-server's processRoutedMsgArgs,
        processRoutedHeaderMsgArgs and the RS+/RS-/LS+/LS- handlers). Argument errors close the
        route without an -ERR, as nats-server does."""
        core = self._core
        if op in (OP_RMSG, OP_HMSG, OP_LMSG):
            args = _split_pub(arg)
            origin = None
            if self._leaf:
                if op == OP_RMSG:
                    self._fail("silent")
                    return False
                args.insert(0, self._account)  # the connection's account, implicit on the wire
            elif op == OP_LMSG:
                if not args:
                    self._fail("silent")
                    return False
                origin = args.pop(0)
            routed = _routed_args(args, op == OP_HMSG)
            if routed is None:
                self._fail("silent")
                return False
            reply, queues, hdr, size = routed
            max_payload = core.max_payload
            if 0 <= max_payload < size:
                self._fail("max_payload")
                return False
            self._origin = origin
            self._account = args[0]
            self._subject = args[1]
            self._reply = reply
            self._queues = queues
            self._size = size
            self._hdr = hdr if hdr > 0 else -1
            self._state = _PAYLOAD
            return True
        self._state = _START
        handler = self._handler
        if op == OP_RSUB:
            handler.proto_rsub(_split_sub(arg))
        elif op == OP_RUNSUB:
            handler.proto_runsub(_split_sub(arg))
        elif op == OP_LSUB:
            handler.proto_lsub(_split_sub(arg))
        elif op == OP_LUNSUB:
            handler.proto_lunsub(_split_sub(arg))
        elif op == OP_CONNECT:
            handler.proto_connect(arg)
        elif op == OP_INFO:
            handler.proto_info(arg)
        else:  # OP_ERR
            handler.proto_client_err(arg)
        return not core.closed

    # ------------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Parse the next chunk of the client's stream (any split point is fine)."""
        if self._closed:
            return
        core = self._core
        if core.closed:
            return
        if not isinstance(data, bytes):
            data = bytes(data)
        n = len(data)
        i = 0
        while i < n:
            state = self._state
            if state == _START:
                op = _FAST4.get(data[i : i + 4]) if not self._op_prefix and not self._route else None
                if op is not None:
                    self._op = op
                    i += 4
                    self._state = _SPC
                    continue
                # Byte-wise walk of the op-name trie (at most 7 bytes): the error must come at
                # the first byte that cannot continue a name, even if the line is incomplete.
                prefix = self._op_prefix
                prefixes = self._prefixes
                while i < n:
                    prefix += data[i : i + 1].upper()
                    i += 1
                    op = prefixes.get(prefix)
                    if op is None:
                        self._fail("unknown_op")
                        return
                    if op:
                        break
                if not op:
                    self._op_prefix = prefix
                    return
                self._op_prefix = b""
                self._op = op
                if op in _NEEDS_SEP:
                    self._state = _SEP
                elif op in _SKIPS:
                    self._state = _SKIP
                else:
                    self._state = _SPC
            elif state == _SEP:
                if data[i] != 32 and data[i] != 9:
                    self._fail("unknown_op")
                    return
                i += 1
                self._state = _SPC
            elif state == _SPC:
                b = data[i]
                while b == 32 or b == 9:
                    i += 1
                    if i == n:
                        return
                    b = data[i]
                # The first argument byte is taken whatever it is (nats-server does the same).
                nl = data.find(b"\n", i + 1)
                if nl < 0:
                    self._arg = bytearray(data[i:])
                    self._state = _ARG
                    if _arg_len(self._arg) > self._mcl:
                        self._fail("max_control_line")
                    return
                raw = data[i:nl]
                i = nl + 1
                if not self._line(raw):
                    return
                if self._state == _PAYLOAD:
                    i = self._payload_fast(data, i, n)
                    if i < 0:
                        return
            elif state == _ARG:
                pending = self._arg
                nl = data.find(b"\n", i)
                if nl < 0:
                    pending += data[i:]
                    if _arg_len(pending) > self._mcl:
                        self._fail("max_control_line")
                    return
                pending += data[i:nl]
                raw = bytes(pending)
                self._arg = bytearray()
                i = nl + 1
                if not self._line(raw):
                    return
                if self._state == _PAYLOAD:
                    i = self._payload_fast(data, i, n)
                    if i < 0:
                        return
            elif state == _SKIP:
                nl = data.find(b"\n", i)
                if nl < 0:
                    return  # junk before LF is ignored and never buffered
                i = nl + 1
                self._state = _START
                op = self._op
                if op == OP_PING:
                    self._handler.proto_ping()
                elif op == OP_PONG:
                    self._handler.proto_pong()
                else:  # +OK from a client is ignored
                    continue
                if core.closed:
                    return
            elif state == _PAYLOAD:
                msg = self._msg
                assert msg is not None
                take = min(self._size - len(msg), n - i)
                msg += memoryview(data)[i : i + take]
                i += take
                if len(msg) == self._size:
                    self._state = _END_R
            elif state == _END_R:
                if data[i] != _CR:
                    self._fail("unknown_op")
                    return
                i += 1
                self._state = _END_N
            else:  # _END_N
                if data[i] != _LF:
                    self._fail("unknown_op")
                    return
                i += 1
                assert self._msg is not None
                msg_bytes = bytes(self._msg)
                self._msg = None
                self._state = _START
                self._publish(msg_bytes)
                if core.closed:
                    return

    def _line(self, raw: bytes) -> bool:
        """A complete control line (bytes from the first argument byte up to, not with, LF)."""
        # Sticky drop: any CR after the first byte removes the byte before LF.
        if len(raw) > 1 and (raw[-1] == _CR or raw.find(b"\r", 1) >= 0):
            raw = raw[:-1]
        return self._control(raw)

    def _payload_fast(self, data: bytes, i: int, n: int) -> int:
        """After a PUB/HPUB line ending at `i`: publish from `data` when the whole payload and its
        CRLF are there (no copy into the parser), else start buffering. -1 when parsing stops."""
        size = self._size
        end = i + size
        core = self._core
        if end + 2 <= n:
            if data[end] != _CR or data[end + 1] != _LF:
                self._fail("unknown_op")
                return -1
            self._state = _START
            self._publish(data[i:end])
            if core.closed:
                return -1
            return end + 2
        self._msg = bytearray(memoryview(data)[i : min(end, n)])
        if len(self._msg) == size:
            self._state = _END_R
        return min(end, n)
