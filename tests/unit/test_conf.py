"""Unit tests for jsedge.conf: the NATS conf syntax, variables, includes, errors, digest."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jsedge.conf import ConfParseError, config_digest, parse, parse_file, plain


def values(text: str, environ: dict[str, str] | None = None) -> dict:
    return plain(parse(text, "t.conf", environ or {}))


@pytest.mark.parametrize(
    "text",
    ["a: 1", "a = 1", "a 1", "a:1;", "a=1,", "{ a: 1 }", "a: 1 # c", "a: 1 // c", "\n\n  a :  1\n"],
)
def test_separators_terminators_and_comments(text: str) -> None:
    assert values(text) == {"a": 1}


def test_several_entries_on_one_line_and_quoted_keys() -> None:
    assert values("a: 1; b: 2, c 3\n'd e': 4\n\"f\": 5") == {"a": 1, "b": 2, "c": 3, "d e": 4, "f": 5}


def test_maps_arrays_and_nesting() -> None:
    text = """
    jetstream { store_dir: "/d", max_mem: 1G }
    accounts { SYS { users: [ {user: a, password: b} ] } }
    arr: [1, "two", 'three'
      # comment inside
      four // another
      [5, 6 ], {k: v}]
    """
    assert values(text) == {
        "jetstream": {"store_dir": "/d", "max_mem": 10**9},
        "accounts": {"SYS": {"users": [{"user": "a", "password": "b"}]}},
        "arr": [1, "two", "three", "four", [5, 6], {"k": "v"}],
    }


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ('"a\\tb\\n\\r\\"\\\\"', 'a\tb\n\r"\\'),
        ('"\\x41\\xe2\\x82\\xac"', "A€"),
        ("'raw $x \\n'", "raw $x \\n"),
        ('"$NAME"', "$NAME"),
        ("127.0.0.1:4222", "127.0.0.1:4222"),
        ("localhost:4222", "localhost:4222"),
        ("12ab", "12ab"),
        ("1e6", "1e6"),
        ("2Mx", "2Mx"),
        ("nats://a:b@host:4222", "nats://a:b@host:4222"),
        ("$2a$11$abc", "$2a$11$abc"),
    ],
)
def test_strings(literal: str, expected: str) -> None:
    assert values(f"v: {literal}\n")["v"] == expected


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("4222", 4222), ("-1", -1), ("0", 0),
        ("1k", 1000), ("1K", 1000), ("1kb", 1024), ("1KB", 1024), ("1ki", 1024), ("1kib", 1024),
        ("2m", 2 * 10**6), ("2MB", 2 * 2**20), ("2mi", 2 * 2**20), ("2MiB", 2 * 2**20),
        ("1g", 10**9), ("1G", 10**9), ("1GB", 2**30), ("1gib", 2**30),
        ("1t", 10**12), ("1tb", 2**40), ("1p", 10**15), ("1pb", 2**50), ("1e", 10**18), ("1eb", 2**60),
        ("-2kb", -2048),
        ("2.5", 2.5), ("-0.5", -0.5),
        ("true", True), ("TRUE", True), ("yes", True), ("On", True),
        ("false", False), ("No", False), ("OFF", False),
    ],
)  # fmt: skip
def test_numbers_units_and_booleans(literal: str, expected: object) -> None:
    parsed = values(f"v: {literal}\n")["v"]
    assert parsed == expected and type(parsed) is type(expected)


def test_datetime_is_zulu_utc() -> None:
    assert values("v: 2026-01-02T15:04:05Z")["v"] == datetime.datetime(2026, 1, 2, 15, 4, 5, tzinfo=datetime.UTC)


def test_block_string_keeps_raw_lines() -> None:
    assert values('v (\nline one\n  two $X "q"\n)\nw: 1\n') == {"v": '\nline one\n  two $X "q"\n', "w": 1}


def test_positions_follow_nats_server_columns() -> None:
    tree = parse("a: 1\n  jetstream {\n    store_dir: x\n  }\nlist: [1,\n 2 ]\n", "f.conf", {})
    assert (tree["a"].position.line, tree["a"].position.column) == (1, 0)  # line 1 counts from 0
    assert (tree["jetstream"].position.line, tree["jetstream"].position.column) == (2, 3)
    inner = tree["jetstream"].value["store_dir"].position
    assert (inner.file, inner.line, inner.column) == ("f.conf", 3, 5)
    second = tree["list"].value[1].position
    assert (second.line, second.column) == (6, 2)
    assert tree["a"].position.prefix() == "f.conf:1:0: "


def test_variables_scoping_and_usage_tracking() -> None:
    tree = parse(
        "N = top\nauthorization { N = inner\n user: $N }\nserver_name: $N\ntags: [a, $N]\nunused: 1\n",
        "t.conf",
        {},
    )
    assert plain(tree["authorization"])["user"] == "inner"
    assert plain(tree["server_name"]) == "top"
    assert plain(tree["tags"]) == ["a", "top"]
    assert tree["N"].used_as_variable and tree["authorization"].value["N"].used_as_variable
    assert not tree["unused"].used_as_variable


def test_environment_variables_are_parsed_as_values() -> None:
    environ = {"NUMV": "123", "NAME": "abc", "SIZE": "2MB", "LIST": "[1, 2 ]"}
    assert values("a: $NUMV\nb: $NAME\nc: $SIZE\nd: $LIST\n", environ) == {
        "a": 123, "b": "abc", "c": 2 * 2**20, "d": [1, 2],
    }  # fmt: skip


def test_file_variables_win_over_environment() -> None:
    assert values("X = file\nv: $X\n", {"X": "env"})["v"] == "file"


def test_unknown_variable() -> None:
    with pytest.raises(ConfParseError) as caught:
        parse("a: 1\nport: $NOPE\n", "t.conf", {})
    assert str(caught.value) == "variable reference for 'NOPE' on line 2 can not be found"


def test_bcrypt_other_than_2a_is_a_variable_like_nats_server() -> None:
    with pytest.raises(ConfParseError, match="variable reference for '2b\\$11\\$x' on line 1"):
        parse("p: $2b$11$x\n", "t.conf", {})


def test_environment_cycle_detected() -> None:
    with pytest.raises(ConfParseError) as caught:
        parse("server_name = $A\n", "t.conf", {"A": "$B", "B": "$A"})
    assert str(caught.value) == (
        "variable reference for 'A' on line 1 could not be parsed: variable reference for 'B' on line 1 "
        "could not be parsed: variable reference for 'A' on line 1 could not be parsed: "
        "variable reference cycle for 'A'"
    )


def test_self_reference_is_not_found() -> None:
    with pytest.raises(ConfParseError, match="variable reference for 'B' on line 1 can not be found"):
        parse("A = $B\nB = $A\n", "t.conf", {})


def test_include_relative_nested_and_merged(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "accounts.conf").write_text("A { users = [{user: a, password: b}] }\n")
    (tmp_path / "sub" / "outer.conf").write_text("include 'inner.conf'\nport: 4000\n")
    (tmp_path / "sub" / "inner.conf").write_text("max_payload: 2k\n")
    main = tmp_path / "main.conf"
    main.write_text('accounts { include sub/accounts.conf }\ninclude "sub/outer.conf"\nINCLUDE sub/inner.conf\n')
    tree = parse_file(str(main), {})
    assert plain(tree) == {
        "accounts": {"A": {"users": [{"user": "a", "password": "b"}]}},
        "max_payload": 2000,
        "port": 4000,
    }
    assert tree["port"].position.file.endswith("outer.conf")


def test_included_file_cannot_see_including_variables(tmp_path: Path) -> None:
    (tmp_path / "inc.conf").write_text("server_name: inc\nport: $P\n")
    main = tmp_path / "main.conf"
    main.write_text("P = 4000\ninclude inc.conf\n")
    with pytest.raises(ConfParseError) as caught:
        parse_file(str(main), {})
    assert str(caught.value) == (
        "error parsing include file 'inc.conf', variable reference for 'P' on line 2 can not be found"
    )
    assert parse_file(str(main), {"P": "5"})["port"].value == 5  # the environment still works


def test_include_errors(tmp_path: Path) -> None:
    main = tmp_path / "main.conf"
    main.write_text("include ./nope.conf\n")
    with pytest.raises(ConfParseError) as caught:
        parse_file(str(main), {})
    assert str(caught.value) == (
        f"error parsing include file './nope.conf', open {tmp_path}/nope.conf: no such file or directory"
    )
    (tmp_path / "bad.conf").write_text("x = \n")
    main.write_text('include "bad.conf"\n')
    with pytest.raises(ConfParseError) as caught:
        parse_file(str(main), {})
    assert str(caught.value) == (
        "error parsing include file 'bad.conf', Parse error on line 2: 'Expected value but found new line'"
    )


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfParseError, match="no such file or directory"):
        parse_file(str(tmp_path / "missing.conf"), {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('x = "\\q"\n', "Parse error on line 1: 'Invalid escape character 'q'. Only the following escape "
         "characters are allowed: \\xXX, \\t, \\n, \\r, \\\", \\\\.'"),
        ('x = "\\xzz"\n', "Parse error on line 1: 'Expected two hexadecimal digits after '\\x', but got 'zz''"),
        ("x: 1.5x\n", "Parse error on line 1: 'Expected a top-level value to end with a new line, comment or "
         "EOF, but got 'x' instead.'"),
        ("x: .5\n", "Parse error on line 1: 'Floats must start with a digit'"),
        ("x: -x\n", "Parse error on line 1: 'Expected a digit but got 'x'.'"),
        ("x: 1.x\n", "Parse error on line 1: 'Floats must have a digit after the '.', but got 'x' instead.'"),
        ("x: 20-01\n", "Parse error on line 1: 'All ISO8601 dates must be in full Zulu form.'"),
        ("x: 2026-01-02X\n", "Parse error on line 1: 'Expected 'T' in ISO8601 datetime, but found 'X' instead.'"),
        ("a: 1\nx = \n", "Parse error on line 3: 'Expected value but found new line'"),
        ("x: [1]\n", "Parse error on line 2: 'Expected an array value terminator \",\" or an array terminator "
         "\"]\", but got '\x00' instead.'"),
        ("x: [a,,b]\n", "Parse error on line 1: 'Unexpected array value terminator ','.'"),
        ("x: {a: 1 b}\n", "Parse error on line 1: 'Expected a map value terminator \",\" or a map terminator "
         "\"}\", but got 'b' instead.'"),
        ("x: {a: 1\n", "Parse error on line 2: 'Unexpected EOF processing map.'"),
        ("x: 'abc\n", "Parse error on line 2: 'Unexpected EOF.'"),
        ("x (\nabc\n", "Parse error on line 3: 'Unexpected EOF processing block.'"),
        ("= 1\n", "Parse error on line 1: 'Unexpected key separator '=''"),
        ("x: 99999999999999999999\n", "Parse error on line 1: 'Value '99999999999999999999' is outside of "
         "the integer range'"),
        ("include [a]\n", "Parse error on line 1: 'Expected include value but found start of an array'"),
        ("x\n", "config is invalid (t.conf:2:1)"),
        ("a: 1\nbb", "config is invalid (t.conf:2:3)"),
    ],
)  # fmt: skip
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ConfParseError) as caught:
        parse(text, "t.conf", {})
    assert str(caught.value) == message


def test_digest_matches_nats_server_known_values() -> None:
    # Digests printed by `nats-server -t` 2.15.1 for these files.
    assert config_digest(parse("server_name: 3secret\n", "", {})) == (
        "sha256:48ffd8bf52f196a166c73cd32d4ff521e7121bf07a2753d40712c66ea1a1201d"
    )
    assert config_digest(parse("A = 1\nport = $A\n", "", {})) == (
        "sha256:220a9265723a9e9c3296e8a3aec76af866fac451653cf14fd01995ec79620251"
    )


_keys = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda key: key.lower() not in {"include", "true", "false", "yes", "no", "on", "off"}
)
_scalars = st.one_of(
    st.integers(min_value=-(2**62), max_value=2**62),
    st.booleans(),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=12),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6).map(lambda f: round(f, 3)),
)
_trees = st.recursive(
    _scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(_keys, children, max_size=4)),
    max_leaves=12,
)


def _render(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        # The space before `]` matters: nats-server lexes `[1]` as the string "1]" (and so do we).
        return "[" + ", ".join(_render(item) for item in value) + " ]"
    assert isinstance(value, dict)
    return "{\n" + "\n".join(f"{key}: {_render(item)}" for key, item in value.items()) + "\n}"


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_keys, _trees, max_size=5))
def test_round_trip_rendered_maps_parse_back(tree: dict) -> None:
    text = "\n".join(f"{key} = {_render(value)}" for key, value in tree.items()) + "\n"

    def normalise(value: object) -> object:
        if isinstance(value, float):
            return round(value, 3)
        if isinstance(value, list):
            return [normalise(item) for item in value]
        if isinstance(value, dict):
            return {key: normalise(item) for key, item in value.items()}
        return value

    assert normalise(values(text)) == normalise(tree)
