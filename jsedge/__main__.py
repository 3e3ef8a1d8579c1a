"""`jsedge` and `python -m jsedge`: run the server with nats-server's flags (layer 7).

With no subcommand, the arguments are nats-server's command line (`-c`, `-p`, `-js`, `-DV`, ...).
"""

from __future__ import annotations

import os
import signal
import sys

from jsedge import NATS_COMPAT_VERSION, __version__

_SIGNALS = {
    "stop": signal.SIGKILL,
    "quit": signal.SIGINT,
    "term": signal.SIGTERM,
    "reopen": signal.SIGUSR1,
    "reload": signal.SIGHUP,
    "ldm": signal.SIGUSR2,
}


def _find_pids() -> list[int]:
    pids = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if any(part.endswith(b"jsedge") for part in argv[:3]) and b"--signal" not in argv and b"-sl" not in argv:
            pids.append(int(entry))
    return pids


def send_signal(spec: str) -> int:
    command, _, target = spec.partition("=")
    sig = _SIGNALS.get(command)
    if sig is None:
        print(f"jsedge: unknown signal {command!r}", file=sys.stderr)
        return 1
    if target:
        if target.isdigit():
            pids = [int(target)]
        else:
            try:
                with open(target, encoding="ascii") as handle:
                    pids = [int(handle.read().strip())]
            except (OSError, ValueError) as exc:
                print(f"jsedge: could not read pid from {target}: {exc}", file=sys.stderr)
                return 1
    else:
        pids = _find_pids()
        if not pids:
            print("jsedge: no jsedge process running", file=sys.stderr)
            return 1
        if len(pids) > 1:
            print("jsedge: multiple jsedge processes running:\n" + "\n".join(map(str, pids)), file=sys.stderr)
            return 1
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError as exc:
            print(f"jsedge: {exc}", file=sys.stderr)
            return 1
    return 0


#: Management subcommands: `jsedge <name> ...`. Without one, the arguments are nats-server's flags.
SUBCOMMANDS = {
    "service": "jsedge.service",
    # clients managing any NATS server over the protocol (jsedge.cli, imported only when used)
    "server": "jsedge.cli.server",
    "stream": "jsedge.cli.stream",
    "consumer": "jsedge.cli.consumer",
    "pub": "jsedge.cli.pub",
    "sub": "jsedge.cli.sub",
    "req": "jsedge.cli.req",
    "reply": "jsedge.cli.reply",
    "kv": "jsedge.cli.kv",
    "object": "jsedge.cli.obj",
    "bench": "jsedge.cli.bench",
}


#: The nats CLI's short names for subcommands.
ALIASES = {"obj": "object", "str": "stream", "con": "consumer", "srv": "server"}

#: Connection options the nats CLI takes before the subcommand (`nats -s URL stream ls`), with a
#: value; `--json` has none.
_GLOBAL_WITH_VALUE = ("-s", "--server", "--user", "--password", "--creds", "--timeout", "--domain", "--js-domain")
_GLOBAL_FLAGS = ("--json",)


def _subcommand(word: str) -> str | None:
    name = ALIASES.get(word, word)
    return name if name in SUBCOMMANDS else None


def _hoist_globals(argv: list[str]) -> list[str] | None:
    """`jsedge -s URL --creds F stream ls` -> `jsedge stream -s URL --creds F ls`: connection options
    before a subcommand move behind its name; None when no subcommand follows them."""
    index = 0
    hoisted: list[str] = []
    while index < len(argv):
        token = argv[index]
        name = token.split("=", 1)[0]
        if name in _GLOBAL_WITH_VALUE:
            if "=" in token:
                hoisted.append(token)
                index += 1
            elif index + 1 < len(argv):
                hoisted += argv[index : index + 2]
                index += 2
            else:
                return None
        elif token in _GLOBAL_FLAGS:
            hoisted.append(token)
            index += 1
        else:
            break
    if not hoisted or index >= len(argv) or _subcommand(argv[index]) is None:
        return None
    return [argv[index], *hoisted, *argv[index + 1 :]]


def _help(topic: list[str]) -> int:
    """`jsedge help` (the server's options and the management commands) or `jsedge help <cmd>`."""
    if topic:
        name = _subcommand(topic[0])
        if name is None:
            return _unknown(topic[0])
        return main([name, *topic[1:], "--help"])
    from jsedge.config import load_config

    print(load_config(["--help"]).help_text)
    _print_commands()
    return 0


def _print_commands() -> None:
    print("\nManagement commands (`jsedge <command> --help` for each; the nats CLI's, against any NATS server):")
    aliases = {name: alias for alias, name in ALIASES.items()}
    for name in SUBCOMMANDS:
        print(f"    {name}" + (f" ({aliases[name]})" if name in aliases else ""))
    print("    help [command]\n    version")


def _unknown(word: str) -> int:
    import difflib

    names = [*SUBCOMMANDS, *ALIASES, "help", "version"]
    close = difflib.get_close_matches(word, names, n=1)
    hint = f', did you mean "{ALIASES.get(close[0], close[0])}"?' if close else ""
    print(f'jsedge: unknown command "{word}"{hint} (jsedge help lists them)', file=sys.stderr)
    return 1


def _skip_websocket_transport(argv: list[str]) -> None:
    """nats-py imports aiohttp (its WebSocket transport) whenever aiohttp is installed: ~0.2 s of
    a management command's start for a transport it uses only for ws:// servers. Unless a ws://
    or wss:// server is named (`-s`, `$NATS_URL`), this process does without it."""
    import os

    named = " ".join(argv) + " " + os.environ.get("NATS_URL", "")
    if "ws://" not in named and "wss://" not in named and "aiohttp" not in sys.modules:
        sys.modules["aiohttp"] = None  # type: ignore[assignment]  # (import aiohttp: ImportError)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and not argv[0].startswith("-"):
        word = argv[0]
        if word == "help":
            return _help(argv[1:])
        if word == "version":
            print(f"jsedge: v{__version__} (nats-server v{NATS_COMPAT_VERSION} compatible)")
            return 0
        if _subcommand(word) is None:
            return _unknown(word)
    hoisted = _hoist_globals(argv) if argv and argv[0].startswith("-") else None
    if hoisted is not None:
        argv = hoisted
    if argv and _subcommand(argv[0]) is not None:
        import importlib

        _skip_websocket_transport(argv)
        return int(importlib.import_module(SUBCOMMANDS[_subcommand(argv[0]) or ""]).main(argv[1:]))
    from jsedge.config import ConfigError, load_config

    try:
        result = load_config(argv)
    except ConfigError as exc:
        print(f"jsedge: {exc}", file=sys.stderr)
        return 1
    if result.show_help:
        print(result.help_text)
        _print_commands()
        return 0
    if result.show_version:
        print(f"jsedge: v{__version__} (nats-server v{NATS_COMPAT_VERSION} compatible)")
        return 0
    config = result.config
    if config.check_config:
        for warning in result.warnings:
            print(f"jsedge: {warning}", file=sys.stderr)
    if config.signal:
        return send_signal(config.signal)
    if config.check_config:
        print(f"jsedge: configuration file {config.config_file} is valid ({config.config_digest})")
        return 0
    # Bind the client port first (a numeric host only; see jsedge.routing.listener), then import the
    # server and asyncio (~60 % of start-up): a client connecting meanwhile waits in the backlog
    # instead of being refused. A bind error is left for the server to raise and log as before.
    listen_socket = None
    if not config.jetstream.enabled:  # stream recovery may take long: refuse clients until it is done
        from jsedge.routing.listener import bind_listener, listen_address

        try:
            listen_socket = bind_listener(*listen_address(config))
        except OSError:
            listen_socket = None

    import asyncio

    from jsedge.log import Logger
    from jsedge.server import install_event_loop_policy, serve

    logging = config.logging
    logger = Logger(
        debug=logging.debug,
        trace=logging.trace,
        logtime=logging.logtime,
        utc=logging.logtime_utc,
        logfile=logging.logfile,
    )
    for warning in result.warnings:
        logger.warn(warning)
    loop_kind = install_event_loop_policy()
    logger.debug(f"Event loop: {loop_kind}")
    try:
        return asyncio.run(serve(config, logger, argv, listen_socket))
    except KeyboardInterrupt:
        return 0
    finally:
        logger.close()


if __name__ == "__main__":
    sys.exit(main())
