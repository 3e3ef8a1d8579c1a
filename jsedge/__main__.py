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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        return int(importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:]))
    from jsedge.config import ConfigError, load_config

    try:
        result = load_config(argv)
    except ConfigError as exc:
        print(f"jsedge: {exc}", file=sys.stderr)
        return 1
    if result.show_help:
        print(result.help_text)
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
