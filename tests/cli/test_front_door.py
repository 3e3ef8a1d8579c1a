"""The command line as nats users type it (issue 18, first part): connection options before the
subcommand (`jsedge -s URL stream ls`), the nats CLI's aliases (`str`, `con`, `obj`), options among
positional arguments (`pub SUBJECT --count 3 BODY`), `jsedge help [command]`, `jsedge --help`
listing the management commands, `jsedge version`, and "did you mean" for a mistyped command."""

from __future__ import annotations

import json

import pytest
from conftest import CLI

pytestmark = pytest.mark.timeout(60)


def test_global_options_before_the_subcommand_and_aliases(cli: CLI) -> None:
    cli("stream", "add", "ORDERS", "--subjects", "orders.>", "--defaults")
    plain = cli.__class__("nats://127.0.0.1:1", cli.kind)  # NATS_URL points nowhere: -s must win
    for args in (
        ("-s", cli.url, "stream", "ls", "--json"),
        (f"--server={cli.url}", "str", "ls", "--json"),
        ("-s", cli.url, "--json", "str", "ls"),
    ):
        result = plain(*args)
        assert "ORDERS" in json.dumps(json.loads(result.out)), result


def test_options_among_positionals(cli: CLI) -> None:
    cli("stream", "add", "ORDERS", "--subjects", "orders.>", "--defaults")
    cli("pub", "orders.created", "--count", "3", '{"n":{{Count}}}')

    async def count(nc, js):
        return (await js.stream_info("ORDERS")).state.messages

    assert cli.state(count) == 3


@pytest.mark.parametrize("server_kind", ["jsedge"], indirect=True)
def test_help_version_and_did_you_mean(cli: CLI) -> None:
    listing = cli("help")
    assert "Management commands" in listing.out and "stream" in listing.out and "object (obj)" in listing.out
    assert "Management commands" in cli("--help").out
    assert "purge" in cli("help", "stream").out
    assert cli("version").out.startswith("jsedge: v")
    wrong = cli("strem", "ls", ok=False)
    assert wrong.rc == 1 and 'unknown command "strem", did you mean "stream"?' in wrong.err


def _at_a_terminal(cli: CLI, args: list[str], answers: dict[str, str], timeout: float = 15.0) -> str:
    """Run `jsedge *args` on a pseudo-terminal, answering each `? Label` prompt from `answers`
    (Enter when the label is not there); everything it printed."""
    import os
    import pty
    import select
    import subprocess
    import sys
    import time

    from helpers import REPO_ROOT

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jsedge", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=cli.env(),
        cwd=str(REPO_ROOT),
        close_fds=True,
    )
    os.close(slave)
    seen = b""
    answered = 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
            text = seen.decode(errors="replace")
            prompts = text.count("\n? ") + text.startswith("? ")
            last_line = text.replace("\r", "").rsplit("\n", 1)[-1]
            if prompts > answered and last_line.startswith("? "):
                label = last_line[2:]
                reply = next((value for key, value in answers.items() if label.startswith(key)), "")
                os.write(master, reply.encode() + b"\n")
                answered = prompts
            if proc.poll() is not None and not ready:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        os.close(master)
    return seen.decode(errors="replace")


@pytest.mark.parametrize("server_kind", ["jsedge"], indirect=True)
def test_stream_add_asks_at_a_terminal_and_never_without_one(cli: CLI) -> None:
    text = _at_a_terminal(
        cli,
        ["stream", "add", "ORDERS"],
        {"Subjects": "orders.>", "Storage": "memory", "Stream Messages Limit": "100", "Message TTL": "1h"},
    )
    assert "? Storage [file]" in text and "? Replication [1]" in text and "Stream ORDERS was created" in text, text

    async def config(nc, js):
        return (await js.stream_info("ORDERS")).config

    created = cli.state(config)
    assert created.subjects == ["orders.>"] and str(created.storage) in ("memory", "StorageType.MEMORY")
    assert created.max_msgs == 100 and created.max_age == 3600 and str(created.discard) in ("old", "DiscardPolicy.OLD")
    piped = cli("stream", "add", "OTHER", ok=False)  # stdin is not a terminal: no question, an error
    assert piped.rc == 1 and "--subjects and --storage required" in piped.err and "?" not in piped.out


@pytest.mark.parametrize("server_kind", ["jsedge"], indirect=True)
def test_consumer_add_asks_at_a_terminal(cli: CLI) -> None:
    cli("stream", "add", "ORDERS", "--subjects", "orders.>", "--defaults")
    text = _at_a_terminal(
        cli,
        ["consumer", "add", "ORDERS"],
        {"Consumer name": "WORKER", "Filter Stream": "orders.new", "Maximum Allowed Deliveries": "5"},
    )
    assert "? Acknowledgment policy [explicit]" in text, text

    async def config(nc, js):
        return (await js.consumer_info("ORDERS", "WORKER")).config

    created = cli.state(config)
    assert created.filter_subject == "orders.new" and created.max_deliver == 5 and created.deliver_subject is None


@pytest.mark.parametrize("server_kind", ["jsedge"], indirect=True)
def test_bench_shows_progress_at_a_terminal_only(cli: CLI) -> None:
    text = _at_a_terminal(cli, ["bench", "pub", "foo", "--msgs", "20000", "--size", "16"], {})
    assert "Progress [" in text and "100% 20,000/20,000" in text and "Pub stats:" in text, text
    assert "Progress" not in cli("bench", "pub", "foo", "--msgs", "2000").out + cli("bench", "pub", "foo").err


def test_management_commands_leave_nats_pys_websocket_transport_out() -> None:
    """nats-py imports aiohttp (its WebSocket transport) when it is installed, ~0.2 s of every
    command's start: a command naming no ws:// server runs without it; one naming one keeps it."""
    import subprocess
    import sys

    probe = (
        "import sys, jsedge.__main__ as m\n"
        "try:\n    m.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('LOADED' if sys.modules.get('aiohttp') is not None else 'SKIPPED')\n"
    )
    for url, wanted in (("nats://127.0.0.1:9", "SKIPPED"), ("ws://127.0.0.1:9", None)):
        done = subprocess.run(
            [sys.executable, "-c", probe, "stream", "ls", "-s", url], capture_output=True, text=True, timeout=60
        )
        last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
        if wanted is not None:
            assert last == wanted, done.stdout + done.stderr
        else:
            assert last in ("LOADED", "SKIPPED")  # (LOADED where aiohttp is installed)
