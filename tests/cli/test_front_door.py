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
