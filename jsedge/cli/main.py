"""Shared plumbing of the management commands (`jsedge server|stream|consumer|pub|sub|req|reply|kv|
object|bench ...`): the argparse tree helpers, connection options, the JetStream API request helper
and error printing.

These commands are clients: they manage any NATS server (jsedge or nats-server) over the protocol
with nats-py, like the nats CLI. Connection options may be given before or after the subcommand:

    -s/--server URL   (default $NATS_URL or nats://127.0.0.1:4222)
    --user, --password (default $NATS_USER / $NATS_PASSWORD), --creds FILE ($NATS_CREDS)
    --timeout DURATION (default 5s), --domain JS_DOMAIN, --json (machine output)

Errors print `jsedge: error: <what>: <server's description>` on stderr and exit 1 (Nagios-style
checks use their own exit codes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

DEFAULT_URL = "nats://127.0.0.1:4222"

_COMMON_DEFAULTS = {
    "server": None,
    "user": None,
    "password": None,
    "creds": None,
    "timeout": "5s",
    "domain": None,
    "json": False,
}


class CLIError(Exception):
    """A user-facing failure: printed as `jsedge: error: <message>`, exit status `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class APIError(CLIError):
    """An error object from the JetStream API (`{"code","err_code","description"}`)."""

    def __init__(self, error: dict[str, Any], context: str = "") -> None:
        self.status = int(error.get("code") or 0)
        self.err_code = int(error.get("err_code") or 0)
        self.description = str(error.get("description") or f"error {self.status}")
        text = self.description + (f" ({self.err_code})" if self.err_code else "")
        super().__init__(f"{context}: {text}" if context else text)


# -------------------------------------------------------------------------------------------------
# argparse helpers


def _common_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("connection")
    sup = argparse.SUPPRESS
    g.add_argument("-s", "--server", default=sup, help=f"NATS server URL(s) (default $NATS_URL or {DEFAULT_URL})")
    g.add_argument("--user", default=sup, help="user name or token ($NATS_USER)")
    g.add_argument("--password", default=sup, help="password ($NATS_PASSWORD)")
    g.add_argument("--creds", default=sup, help="user credentials file ($NATS_CREDS)")
    g.add_argument("--timeout", default=sup, help="time to wait for responses (default 5s)")
    g.add_argument("--domain", "--js-domain", dest="domain", default=sup, help="JetStream domain")
    g.add_argument("--json", action="store_true", default=sup, help="produce JSON output")
    return p


COMMON = _common_parser()


def opt(args: argparse.Namespace, name: str) -> Any:
    return getattr(args, name, _COMMON_DEFAULTS.get(name))


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=f"jsedge {prog}",
        description=description,
        parents=[COMMON],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_command(
    subparsers: Any,
    name: str,
    handler: Callable[..., Awaitable[int | None]],
    help: str,
    aliases: tuple[str, ...] = (),
    fast: bool | Callable[[argparse.Namespace], bool] = False,
) -> argparse.ArgumentParser:
    """A subcommand. `fast`: its handler uses only `ctx.api`, `ctx.paged`, `ctx.request` and
    `ctx.nc`'s publish/request/flush, so it runs on the blocking client (jsedge.cli.wire), without
    asyncio and nats-py, when the connection allows (a callable decides from the parsed arguments)."""
    p = subparsers.add_parser(name, help=help, description=help, aliases=list(aliases), parents=[COMMON])
    p.set_defaults(handler=handler, fast=fast)
    return p


def subcommands(parser: argparse.ArgumentParser, title: str = "commands") -> Any:
    sub = parser.add_subparsers(title=title, metavar="COMMAND")
    sub.required = True
    return sub


# -------------------------------------------------------------------------------------------------
# connection and context


class Context:
    """What a handler gets: the connection, JetStream API helpers and output options."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.json = bool(opt(args, "json"))
        from jsedge.cli.output import parse_duration

        self.timeout = parse_duration(opt(args, "timeout")) / 1e9 or 5.0
        domain = opt(args, "domain")
        self.api_prefix = f"$JS.{domain}.API" if domain else "$JS.API"
        self.url = opt(args, "server") or os.environ.get("NATS_URL") or DEFAULT_URL
        self.nc: Any = None
        self._js: Any = None
        self.connect_time = 0.0
        #: connected with the blocking client (jsedge.cli.wire), not nats-py
        self.blocking = False
        self._last_error: BaseException | None = None

    async def _on_error(self, exc: BaseException) -> None:
        self._last_error = exc

    def _servers(self) -> list[str]:
        servers = [u.strip() for u in self.url.split(",") if u.strip()]
        return [u if "://" in u else f"nats://{u}" for u in servers]

    def connect_wire(self) -> Any:
        """Connect with the blocking client (jsedge.cli.wire) for a command marked `fast`;
        NeedsFullClient when the connection needs nats-py (TLS, credentials, WebSocket)."""
        import time

        from jsedge.cli.wire import NeedsFullClient, WireClient, WireError

        args = self.args
        if opt(args, "creds") or os.environ.get("NATS_CREDS"):
            raise NeedsFullClient("creds")
        servers = self._servers()
        started = time.perf_counter()
        try:
            self.nc = WireClient.connect(
                servers,
                user=opt(args, "user") or os.environ.get("NATS_USER"),
                password=opt(args, "password") or os.environ.get("NATS_PASSWORD"),
                name="jsedge cli",
                timeout=self.timeout,
            )
        except WireError as exc:
            raise CLIError(f"could not connect to {', '.join(servers)}: {exc}") from None
        self.blocking = True
        self.connect_time = time.perf_counter() - started
        return self.nc

    def request_errors(self) -> tuple[Any, Any]:
        """(no responders, timeout) exception classes of the client in use."""
        if self.blocking:
            from jsedge.cli.wire import NoResponders, WireTimeout

            return NoResponders, WireTimeout
        import nats.errors

        return nats.errors.NoRespondersError, (TimeoutError, nats.errors.TimeoutError)

    async def connect(self, **extra: Any) -> Any:
        import asyncio
        import time

        import nats

        args = self.args
        servers = self._servers()
        user = opt(args, "user") or os.environ.get("NATS_USER")
        password = opt(args, "password") or os.environ.get("NATS_PASSWORD")
        creds = opt(args, "creds") or os.environ.get("NATS_CREDS")
        options: dict[str, Any] = {
            "servers": servers,
            "name": "jsedge cli",
            "connect_timeout": self.timeout,
            "allow_reconnect": False,
            # nats-py loops forever on the initial connect with 0: one retry, then give up
            "max_reconnect_attempts": 1,
            "reconnect_time_wait": 0.1,
            "error_cb": self._on_error,
            "disconnected_cb": _quiet_noargs,
            "closed_cb": _quiet_noargs,
        }
        if user and password is None:
            options["token"] = user
        elif user:
            options["user"], options["password"] = user, password
        if creds:
            options["user_credentials"] = creds
        options.update(extra)
        started = time.perf_counter()
        try:
            self.nc = await asyncio.wait_for(nats.connect(**options), self.timeout * 2 + 1)
        except Exception as exc:
            cause = self._last_error or exc
            reason = str(cause) or type(cause).__name__
            raise CLIError(f"could not connect to {', '.join(servers)}: {reason}") from exc
        self.connect_time = time.perf_counter() - started
        return self.nc

    @property
    def js(self) -> Any:
        if self._js is None:
            domain = opt(self.args, "domain")
            self._js = self.nc.jetstream(timeout=self.timeout, domain=domain)
        return self._js

    async def request(
        self, subject: str, payload: bytes = b"", timeout: float | None = None, headers: Any = None
    ) -> Any:
        no_responders, timed_out = self.request_errors()
        try:
            return await self.nc.request(subject, payload, timeout=timeout or self.timeout, headers=headers)
        except no_responders:
            raise CLIError(f"no responders for {subject}") from None
        except timed_out:
            raise CLIError(f"timeout waiting for a response on {subject}") from None

    async def api(
        self, suffix: str, body: Any = None, context: str = "", timeout: float | None = None
    ) -> dict[str, Any]:
        """A `$JS.API.<suffix>` request; raises APIError with the server's description on errors."""
        no_responders, timed_out = self.request_errors()
        subject = f"{self.api_prefix}.{suffix}"
        payload = b"" if body is None else json.dumps(body).encode()
        try:
            msg = await self.nc.request(subject, payload, timeout=timeout or self.timeout)
        except no_responders:
            raise CLIError(
                f"{context + ': ' if context else ''}JetStream not enabled (no responders for {subject})"
            ) from None
        except timed_out:
            raise CLIError(f"{context + ': ' if context else ''}timeout waiting for a response on {subject}") from None
        try:
            resp = json.loads(msg.data)
        except ValueError:
            raise CLIError(f"invalid JetStream API response on {subject}: {msg.data[:200]!r}") from None
        if isinstance(resp, dict) and resp.get("error"):
            raise APIError(resp["error"], context)
        return resp

    async def paged(self, suffix: str, key: str, body: dict[str, Any] | None = None) -> list[Any]:
        """All items of a paged list/names endpoint."""
        items: list[Any] = []
        offset = 0
        while True:
            req = dict(body or {})
            req["offset"] = offset
            resp = await self.api(suffix, req)
            page = resp.get(key) or []
            items.extend(page)
            offset += len(page)
            if not page or offset >= int(resp.get("total") or 0):
                return items

    async def close(self) -> None:
        if self.blocking:
            await self.nc.drain()
        elif self.nc is not None and not self.nc.is_closed:
            import asyncio

            try:
                await asyncio.wait_for(self.nc.drain(), 2)
            except Exception:
                try:
                    await self.nc.close()
                except Exception:
                    pass


async def _quiet(*_: Any) -> None:
    return None


async def _quiet_noargs() -> None:
    return None


# -------------------------------------------------------------------------------------------------
# running


def error(message: str) -> None:
    print(f"jsedge: error: {message}", file=sys.stderr)


def js_error_text(exc: BaseException) -> str | None:
    """The server's description from a nats-py JetStream error, else None."""
    try:
        import nats.js.errors as jse
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, jse.APIError):
        desc = exc.description or type(exc).__name__
        return f"{desc} ({exc.err_code})" if exc.err_code else desc
    return None


def _run_fast(handler: Callable[..., Awaitable[int | None]], args: argparse.Namespace) -> int | None:
    """A command marked `fast` on the blocking client, without an event loop (see jsedge.cli.wire);
    None when its connection needs nats-py."""
    from jsedge.cli.wire import NeedsFullClient, drive

    ctx = Context(args)
    try:
        ctx.connect_wire()
    except NeedsFullClient:
        return None
    try:
        return int(drive(handler(ctx, args)) or 0)  # type: ignore[arg-type]
    finally:
        drive(ctx.close())


async def _run(handler: Callable[..., Awaitable[int | None]], args: argparse.Namespace, connect: bool) -> int:
    ctx = Context(args)
    try:
        if connect:
            await ctx.connect()
        rc = await handler(ctx, args)
        return int(rc or 0)
    finally:
        await ctx.close()


def execute(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    """Parse `argv`, run the selected handler with a connection, print errors; the exit status."""
    if any(isinstance(action, argparse._SubParsersAction) for action in parser._actions):
        args = parser.parse_args(argv)
    else:
        # options anywhere among the positionals, as the nats CLI (kingpin) takes them:
        # `pub orders.created --count 50 '{"n":{{Count}}}'`
        args = parser.parse_intermixed_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    connect = getattr(args, "connect", True)
    fast = getattr(args, "fast", False)
    try:
        if connect and (fast(args) if callable(fast) else fast):
            rc = _run_fast(handler, args)
            if rc is not None:
                return rc
        import asyncio

        return asyncio.run(_run(handler, args, connect))
    except CLIError as exc:
        error(str(exc))
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        from jsedge.cli.wire import NoResponders

        text = js_error_text(exc) if "nats" in sys.modules else None
        if text is None:
            errors: tuple[Any, ...] = ()
            if "nats" in sys.modules:
                import nats.errors

                errors = (nats.errors.NoRespondersError,)
            if isinstance(exc, TimeoutError) or type(exc).__name__ == "TimeoutError":
                text = "timeout waiting for a response"
            elif isinstance(exc, (NoResponders, *errors)):
                text = "no responders (is JetStream enabled?)"
            else:
                text = str(exc) or type(exc).__name__
        if os.environ.get("JSEDGE_CLI_TRACE"):
            import traceback

            traceback.print_exc()
        error(text)
        return 1


def interactive() -> bool:
    """A person at a terminal (stdin and stdout): the commands may ask for what is missing."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def ask(label: str, default: str = "", valid: Callable[[str], bool] | None = None) -> str:
    """Ask for one value on the terminal, the nats CLI's way (`? Label [default]`): Enter takes
    the default; an answer `valid` refuses is asked again. End of input: the default."""
    shown = f" [{default}]" if default else ""
    while True:
        try:
            answer = input(f"? {label}{shown} ").strip()
        except EOFError:
            return default
        answer = answer or default
        if answer and (valid is None or valid(answer)):
            return answer
        print(f"  {label}: not a valid answer" if answer else f"  {label} is required")


def confirm(question: str, force: bool) -> bool:
    """Ask on a terminal unless --force; without a terminal (scripts) the command proceeds."""
    if force or not sys.stdin.isatty():
        return True
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")
