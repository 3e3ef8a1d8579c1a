"""Unit tests for jsedge.config: the tree, flags, file options, validation, reload diff."""

from __future__ import annotations

from pathlib import Path

import pytest

from jsedge.config import (
    ConfigError,
    Permissions,
    ResponsePermission,
    ServerConfig,
    SubjectPermission,
    diff_for_reload,
    format_go_duration,
    load_config,
    parse_go_duration,
)

DATA = Path(__file__).resolve().parents[1] / "data"


def load_text(tmp_path: Path, text: str, *flags: str, environ: dict[str, str] | None = None):
    path = tmp_path / "test.conf"
    path.write_text(text)
    return load_config(["-c", str(path), *flags], environ or {})


def problems_of(tmp_path: Path, text: str, *flags: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text, *flags)
    prefix = str(tmp_path / "test.conf")
    return [problem.replace(prefix, "F") for problem in caught.value.problems]


def test_defaults() -> None:
    config = load_config([], {}).config
    assert config == ServerConfig()
    assert (config.listen.host, config.listen.port) == ("0.0.0.0", 4222)
    assert config.limits.max_payload == 1048576 and config.limits.max_pending == 67108864
    assert config.limits.max_connections == 65536 and config.limits.ping_interval == 120.0
    assert config.logging.logtime is True and config.system_account == "$SYS"
    assert config.jetstream.max_memory_store == -1 and config.jetstream.strict is True
    assert config.config_digest == "" and config.auth.timeout is None


def test_seed_article_config_loads_unchanged() -> None:
    result = load_config(["-c", str(DATA / "seed_nats.conf")], {})
    config = result.config
    assert config.server_name == "nats-1"
    assert config.jetstream.enabled and config.jetstream.store_dir == "/data"
    assert config.jetstream.max_memory_store == 2**30 and config.jetstream.max_file_store == 10 * 2**30
    assert config.monitor.port == 8222
    # The digest nats-server 2.15.1 prints for this file with -t.
    assert config.config_digest == "sha256:40381326e458deb9d0c8332539924fc1376e57948018479833958799b5f966ba"
    assert result.warnings == ()


def test_top_level_options_and_aliases(tmp_path: Path) -> None:
    text = """
    Server_Name: home1
    server_tags: [a, "b c"]
    NET: 127.0.0.1
    port: 4333
    client_advertise: "nats.lan:4222"
    monitor_port: 8223
    https_port: 8443
    http_base_path: /mon
    max_payload: 2MB
    max_control_line: 2KB
    max_pending: 10MB
    max_conn: 100
    max_subs: 50
    max_sub_tokens: 16
    ping_interval: "30s"
    ping_max: 3
    write_deadline: "2s"
    max_closed_clients: 5
    no_header_support: true
    pid_file: /tmp/x.pid
    ports_file_dir: /tmp
    lame_duck_duration: "1m"
    lame_duck_grace_period: "5s"
    system: SYS2
    no_system_account: true
    no_sublist_cache: yes
    allow_non_tls: on
    debug: true, trace: true, trace_verbose: true, logtime: false, logtime_utc: true
    log_file: /tmp/log, logfile_size_limit: 1MB, log_max_num: 3, syslog: false
    remote_syslog: "udp://h:514", max_traced_msg_len: 64
    mappings: { "a.>": "b.>" }
    prof_port: 6060
    """
    config = load_text(tmp_path, text).config
    assert config.server_name == "home1" and config.server_tags == ("a", "b c")
    assert config.listen.host == "127.0.0.1" and config.listen.port == 4333
    assert config.listen.client_advertise == "nats.lan:4222"
    assert (config.monitor.port, config.monitor.https_port, config.monitor.base_path) == (8223, 8443, "/mon")
    limits = config.limits
    assert (limits.max_payload, limits.max_control_line, limits.max_pending) == (2 * 2**20, 2048, 10 * 2**20)
    assert (limits.max_connections, limits.max_subscriptions, limits.max_sub_tokens) == (100, 50, 16)
    assert (limits.ping_interval, limits.ping_max, limits.write_deadline) == (30.0, 3, 2.0)
    assert limits.max_closed_clients == 5 and limits.no_header_support
    assert config.pidfile == "/tmp/x.pid" and config.ports_file_dir == "/tmp"
    assert (config.lame_duck_duration, config.lame_duck_grace_period) == (60.0, 5.0)
    assert config.system_account == "SYS2" and config.no_system_account
    assert config.disable_sublist_cache and config.allow_non_tls
    logging = config.logging
    assert logging.debug and logging.trace and logging.trace_verbose and not logging.logtime and logging.logtime_utc
    assert (logging.logfile, logging.log_size_limit, logging.logfile_max_num) == ("/tmp/log", 2**20, 3)
    assert logging.remote_syslog == "udp://h:514" and logging.max_traced_msg_len == 64
    assert config.mappings == (("a.>", "b.>"),)


@pytest.mark.parametrize(
    ("text", "host", "port", "monitor"),
    [
        ("listen: 127.0.0.1:14224\n", "127.0.0.1", 14224, (None, 0)),
        ("listen: 4333\nhttp: 127.0.0.1:8222\n", "0.0.0.0", 4333, ("127.0.0.1", 8222)),
        ('listen: "[::1]:4222"\nhttp: 8222\n', "::1", 4222, (None, 8222)),
    ],
)
def test_listen_forms(tmp_path: Path, text: str, host: str, port: int, monitor: tuple) -> None:
    config = load_text(tmp_path, text).config
    assert (config.listen.host, config.listen.port) == (host, port)
    assert config.monitor.port == monitor[1]
    if monitor[0]:
        assert config.monitor.host == monitor[0]


def test_max_connections_zero_rejects_everyone(tmp_path: Path) -> None:
    assert load_text(tmp_path, "max_connections: 0\n").config.limits.max_connections == -1


def test_integer_duration_warns_and_means_seconds(tmp_path: Path) -> None:
    result = load_text(tmp_path, "ping_interval: 2m\n")
    assert result.config.limits.ping_interval == 2_000_000.0
    assert result.warnings == (
        f'{tmp_path / "test.conf"}:1:0: invalid use of field "ping_interval": '
        "ping_interval should be converted to a duration",
    )
    # With -t, as in nats-server, the warning is fatal.
    assert problems_of(tmp_path, "ping_interval: 5\n", "-t") == [
        'F:1:0: invalid use of field "ping_interval": ping_interval should be converted to a duration'
    ]


def test_jetstream_forms_and_sizes(tmp_path: Path) -> None:
    assert load_text(tmp_path, "jetstream: enabled\n").config.jetstream.enabled
    assert load_text(tmp_path, "jetstream: true\n").config.jetstream.enabled
    assert not load_text(tmp_path, "jetstream: disable\n").config.jetstream.enabled
    assert not load_text(tmp_path, "jetstream { enabled: false }\n").config.jetstream.enabled
    text = """jetstream {
      store: /data, max_mem: "1G", max_file: 1G, domain: hub, sync: "1m", strict: false, unique_tag: az
      limits { max_ha_assets: 10 }
    }"""
    jetstream = load_text(tmp_path, text).config.jetstream
    assert jetstream.enabled and jetstream.store_dir == "/data"
    assert jetstream.max_memory_store == 2**30 and jetstream.max_file_store == 10**9
    assert (jetstream.domain, jetstream.sync_interval, jetstream.strict, jetstream.unique_tag) == (
        "hub",
        60.0,
        False,
        "az",
    )
    assert jetstream.limits == (("max_ha_assets", 10),)
    always = load_text(tmp_path, "jetstream { sync_interval: always }\n").config.jetstream
    assert always.sync_always and always.sync_interval is None
    assert load_text(tmp_path, "store_dir: /x\njetstream: on\n").config.jetstream.store_dir == "/x"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('jetstream { max_file_store: "1g" }\n', "F:1:12: max_file_store sizes defined as strings must end in K, M, G, T"),
        ('jetstream { max_file_store: "1GB" }\n', 'F:1:12: max_file_store strconv.ParseInt: parsing "1G": invalid syntax'),
        ("store_dir: /a\njetstream { store_dir: /b }\n", "F:2:13: Duplicate 'store_dir' configuration"),
        ("jetstream: maybe\n", "F:1:0: Expected 'enabled' or 'disabled' for string value, got 'maybe'"),
        ('max_payload: "1MB"\n', "F:1:0: interface conversion: interface {} is string, not int64"),
        ("server_name: 5\n", "F:1:0: interface conversion: interface {} is int64, not string"),
        ("port: {a: 1}\n", "F:1:0: interface conversion: interface {} is map[string]interface {}, not int64"),
        ("server_name: 2026-01-02T15:04:05Z\n", "F:1:0: interface conversion: interface {} is time.Time, not string"),
        ("max_payload = 1T\n", "F:1:0: max_payload value is too big"),
        ("max_sub_tokens: 300\n", "F:1:0: max_sub_tokens value is too big"),
        ('lame_duck_duration: "10s"\n', "F:1:0: invalid lame_duck_duration of 10s, minimum is 30 seconds"),
        ('server_name: "a b"\n', "F:1:0: server name cannot contain spaces"),
        ('ping_interval: "2d"\n', 'F:1:0: error parsing ping_interval: time: unknown unit "d" in duration "2d"'),
        ('listen: "localhost"\n', 'F:1:0: could not parse address string "localhost"'),
        ("authorization { token: x, user: a, password: b }\n", "F:1:0: Cannot have a user/pass and token"),
        ("authorization { users: [{user: a, password: b}], token: t }\n", "F:1:0: Can not have a token and a users array"),
        ("authorization { users: [{user: a, password: b}], user: c }\n",
         "F:1:0: Can not have a single user/pass and a users array"),
        ("authorization { users: [{user: a, password: b, foo: 1}] }\n", 'F:1:47: unknown field "foo"'),
        ('authorization { users: [{user: a, password: b, permissions: {publish: {allow: "a", foo: 1}}}] }\n',
         "F:1:83: Unknown field name \"foo\" parsing subject permissions, only 'allow' or 'deny' are permitted"),
        ("jetstream { foo: 1 }\n", 'F:1:12: unknown field "foo"'),
        ("cluster { foo: 1 }\n", 'F:1:10: unknown field "foo"'),
        ("tls { foo: 1 }\n", 'F:1:6: error parsing tls config, unknown field "foo"'),
        ("tls { cert_file: nope.pem, key_file: nope.key }\n",
         "F:1:0: error parsing X509 certificate/key pair: open nope.pem: no such file or directory"),
        ("tls { cert_file: nope.pem }\n", "F:1:0: missing 'key_file' in TLS configuration"),
        ("cluster { authorization { token: x } }\n", "F:1:10: Cluster authorization does not support tokens"),
        ("cluster { authorization { users: [] } }\n", "F:1:10: Cluster authorization does not allow multiple users"),
        ("gateway { port: 7222 }\n", 'F:1:0: field "gateway" is recognised by nats-server but not supported by jsedge'),
        ("mqtt { foo: 1 }\n", 'F:1:7: unknown field "foo"'),
        ("http: { port: 8222, auth: { user: a } }\n", "F:1:20: http auth: a user needs a password (and a password a user)"),
        ("http: { port: 8222, auth: { user: a, password: b, token: c } }\n", "F:1:20: http auth: either user and password, or a token"),
        ("http: { port: 8222, nope: 1 }\n", 'F:1:20: unknown field "nope"'),
        ("http: { port: 8222, console: { actions: true } }\n", "F:1:0: http console actions need http auth"),
        ("mqtt { max_ack_pending: 70000 }\n", "F:1:7: invalid value 70000, should in [0..65535] range"),
        ("A = 1\n", 'F:1:0: unknown field "A"'),
    ],
)  # fmt: skip
def test_file_errors(tmp_path: Path, text: str, expected: str) -> None:
    assert problems_of(tmp_path, text) == [expected]


def test_all_unknown_fields_are_listed(tmp_path: Path) -> None:
    assert problems_of(tmp_path, "\nunknown_key: 1\n  other: 2\nport: 1\n") == [
        'F:2:1: unknown field "unknown_key"',
        'F:3:3: unknown field "other"',
    ]


def test_used_variable_is_not_an_unknown_field(tmp_path: Path) -> None:
    config = load_text(tmp_path, "PASS: $MYPASS\nauthorization { user: a, password: $PASS }\n",
                       environ={"MYPASS": "s3cret"}).config  # fmt: skip
    assert config.auth.password == "s3cret"


def test_parse_errors_become_config_errors(tmp_path: Path) -> None:
    # nats-server's words, after the file:line:col its option errors carry (issue 18: a user with
    # several config files is told which one)
    assert problems_of(tmp_path, "port: $NOPE\n") == ["F:1:6: variable reference for 'NOPE' on line 1 can not be found"]
    assert problems_of(tmp_path, "port: 4222\njetstream {\n  store_dir: /x\n") == [
        "F:4:1: Parse error on line 4: 'Unexpected EOF processing map.'"
    ]
    (tmp_path / "inc.conf").write_text("a: [1\n")
    problems = problems_of(tmp_path, 'include "inc.conf"\n')
    assert problems == [
        f"{tmp_path / 'inc.conf'}:2:1: error parsing include file 'inc.conf', Parse error on line 2: "
        "'Expected an array value terminator \",\" or an array terminator \"]\", but got '\x00' instead.'"
    ]
    with pytest.raises(ConfigError, match="no such file or directory"):
        load_config(["-c", str(tmp_path / "missing.conf")], {})


def test_authorization_users_and_permissions(tmp_path: Path) -> None:
    text = """
    authorization {
      timeout: 3
      default_permissions: { publish: "public.>", subscribe: ["public.>", "_INBOX.>"] }
      users: [
        { user: alice, password: secret,
          permissions: {
            publish: { allow: ["foo.>", "_INBOX.>"], deny: ["foo.secret"] }
            subscribe: { allow: ["foo.>", "q.> grp"] }
            allow_responses: true
          } }
        { nkey: UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4 }
        { username: svc, pass: "$2a$11$abcdefghijklmnopqrstuv", allowed_connection_types: ["STANDARD", "LEAFNODE"],
          permission: { pub: a, sub: { deny: b }, publish_allow_responses: { max: 5, expires: "1m" } } }
        { user: imp, password: x, authorization: { import: i, export: [e] } }
      ]
    }
    """
    result = load_text(tmp_path, text)
    auth = result.config.auth
    assert auth.timeout == 3.0
    default = Permissions(publish=SubjectPermission(allow=("public.>",)),
                          subscribe=SubjectPermission(allow=("public.>", "_INBOX.>")))  # fmt: skip
    assert auth.default_permissions == default
    alice, nkey_user, svc, imp = auth.users
    assert alice.permissions == Permissions(
        publish=SubjectPermission(allow=("foo.>", "_INBOX.>"), deny=("foo.secret",)),
        subscribe=SubjectPermission(allow=("foo.>", "q.> grp")),
        allow_responses=ResponsePermission(max_msgs=1, expires=120.0),
    )
    assert nkey_user.nkey.startswith("UDXU") and nkey_user.permissions == default and nkey_user.account == "$G"
    assert svc.user == "svc" and svc.allowed_connection_types == ("STANDARD", "LEAFNODE")
    assert svc.permissions == Permissions(
        publish=SubjectPermission(allow=("a",)), subscribe=SubjectPermission(deny=("b",)),
        allow_responses=ResponsePermission(max_msgs=5, expires=60.0),
    )  # fmt: skip
    assert imp.permissions == Permissions(
        publish=SubjectPermission(allow=("i",)), subscribe=SubjectPermission(allow=("e",))
    )
    assert "Plaintext passwords detected, use nkeys or bcrypt" in result.warnings


def test_bcrypt_only_passwords_do_not_warn(tmp_path: Path) -> None:
    text = 'authorization { user: a, password: "$2a$11$abcdefghijklmnopqrstuv" }\n'
    assert load_text(tmp_path, text).warnings == ()


def test_accounts(tmp_path: Path) -> None:
    text = """
    accounts {
      APP: {
        jetstream: enabled
        users: [ {user: app, password: app} ]
        exports: [ { stream: "events.>" }, { service: "svc.time", accounts: [OTHER] } ]
        limits { max_connections: 10, max_payload: 1KB }
      }
      OTHER: {
        users: [ {user: o, password: o} ]
        imports: [ { stream: { account: APP, subject: "events.>" }, prefix: "app" } ]
        jetstream { max_mem: 1G, max_file: 10G, max_streams: 10, consumers: 100, max_bytes_required: true }
      }
      SYS: { users: [ {user: sys, password: sys} ] }
    }
    system_account: SYS
    no_auth_user: app
    """
    config = load_text(tmp_path, text).config
    app, other, system = config.accounts
    assert app.name == "APP" and app.jetstream and app.users[0].account == "APP"
    assert [(e.kind, e.subject, e.accounts) for e in app.exports] == [
        ("stream", "events.>", ()),
        ("service", "svc.time", ("OTHER",)),
    ]
    assert app.limits.max_connections == 10 and app.limits.max_payload == 1024
    assert other.imports[0].prefix == "app" and other.imports[0].account == "APP" and other.jetstream
    assert other.jetstream_limits is not None
    assert (other.jetstream_limits.max_memory, other.jetstream_limits.max_store) == (10**9, 10**10)
    assert (other.jetstream_limits.max_streams, other.jetstream_limits.max_consumers) == (10, 100)
    assert not system.jetstream and config.system_account == "SYS" and config.no_auth_user == "app"
    names = load_text(tmp_path, "accounts: [A, B]\n").config.accounts
    assert [account.name for account in names] == ["A", "B"]


def test_account_users_count_as_a_users_array(tmp_path: Path) -> None:
    text = "accounts { A { users: [{user: a, password: a}] } }\nauthorization { user: b, password: b }\n"
    assert problems_of(tmp_path, text) == ["F:2:1: Can not have a single user/pass and a users array"]


def test_duplicate_users_and_no_auth_user(tmp_path: Path) -> None:
    text = "accounts { A { users: [{user: a, password: a}] }, B { users: [{user: a, password: b}] } }\n"
    assert problems_of(tmp_path, text) == ['Duplicate user "a" detected']
    assert problems_of(tmp_path, "no_auth_user: ghost\n") == [
        'no_auth_user: "ghost" not present as user or nkey in authorization block or account configuration'
    ]


def test_tls_block_paths_resolve_against_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "server.pem").write_text("cert")
    (tmp_path / "server.key").write_text("key")
    monkeypatch.chdir(tmp_path)
    text = """tls { cert_file: server.pem, key_file: server.key, verify: true, timeout: "3s",
      handshake_first: true, min_version: "1.3", insecure: false }"""
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "test.conf").write_text(text)
    tls = load_config(["-c", str(sub / "test.conf")], {}).config.tls
    assert tls is not None
    assert (tls.cert_file, tls.key_file, tls.verify, tls.timeout) == ("server.pem", "server.key", True, 3.0)
    assert tls.handshake_first and tls.min_version == "1.3"


def test_cluster_and_leafnodes(tmp_path: Path) -> None:
    text = """
    server_name: n1
    jetstream: enabled
    cluster {
      name: homelab
      listen: 0.0.0.0:6222
      routes: [ "nats-route://n1.lan:6222", "nats-route://user:pass@n2.lan:6222" ]
      authorization { user: route, password: secret, timeout: 2 }
      advertise: "n1.lan:6222", no_advertise: true, connect_retries: 5, pool_size: -1, compression: s2_auto
    }
    leafnodes {
      listen: 7422
      authorization { user: leaf, password: s3cret, account: APP, timeout: 2 }
      remotes: [ { url: "nats-leaf://app:app@hub:7422", account: "$G" } ]
    }
    accounts { APP { users: [{user: a, password: a}] } }
    """
    config = load_text(tmp_path, text).config
    cluster = config.cluster
    assert (cluster.name, cluster.host, cluster.port) == ("homelab", "0.0.0.0", 6222)
    assert cluster.routes[1] == "nats-route://user:pass@n2.lan:6222"
    assert (cluster.user, cluster.password, cluster.auth_timeout) == ("route", "secret", 2.0)
    assert (cluster.advertise, cluster.no_advertise, cluster.connect_retries, cluster.pool_size) == (
        "n1.lan:6222", True, 5, -1)  # fmt: skip
    assert cluster.compression == "s2_auto"
    leaf = config.leafnodes
    assert leaf.port == 7422 and leaf.account == "APP" and leaf.remotes[0]["account"] == "$G"


def test_jetstream_cluster_requires_names(tmp_path: Path) -> None:
    assert problems_of(tmp_path, "jetstream: on\ncluster { listen: 6222 }\n") == [
        "jetstream cluster requires `server_name` to be set",
        "jetstream cluster requires `cluster.name` to be set",
    ]


def test_cross_option_validation(tmp_path: Path) -> None:
    assert problems_of(tmp_path, "max_payload: 1MB\nmax_pending: 256KB\n") == [
        "max_payload (1048576) cannot be higher than max_pending (262144)"
    ]
    assert problems_of(tmp_path, 'lame_duck_duration: "40s"\nlame_duck_grace_period: "50s"\n') == [
        "lame duck grace period (50s) should be strictly lower than lame duck duration (40s)"
    ]
    result = load_text(tmp_path, "max_payload: 10MB\nmax_pending: 100MB\n")
    assert result.warnings == (
        "Maximum payloads over 8.00 MB are generally discouraged and could lead to poor performance",
    )


def test_one_error_lists_every_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, "a: 1\nb: 2\nport: x\n")
    assert str(caught.value).count("\n") == 2 and len(caught.value.problems) == 3


# -- flags ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "check"),
    [
        (["-a", "127.0.0.1"], lambda c: c.listen.host == "127.0.0.1"),
        (["--addr=10.0.0.1"], lambda c: c.listen.host == "10.0.0.1"),
        (["--net", "::1"], lambda c: c.listen.host == "::1"),
        (["-p", "-1"], lambda c: c.listen.port == -1),
        (["--port=5222"], lambda c: c.listen.port == 5222),
        (["-n", "a"], lambda c: c.server_name == "a"),
        (["--name", "b"], lambda c: c.server_name == "b"),
        (["--server_name=c"], lambda c: c.server_name == "c"),
        (["-P", "/p"], lambda c: c.pidfile == "/p"),
        (["--pid", "/q"], lambda c: c.pidfile == "/q"),
        (["-m", "8222"], lambda c: c.monitor.port == 8222),
        (["--http_port", "8223"], lambda c: c.monitor.port == 8223),
        (["-ms", "8443"], lambda c: c.monitor.https_port == 8443),
        (["--https_port=8444"], lambda c: c.monitor.https_port == 8444),
        (["-t"], lambda c: c.check_config),
        (["-sl", "reload=123"], lambda c: c.signal == "reload=123"),
        (["--signal", "stop"], lambda c: c.signal == "stop"),
        (["--client_advertise", "h:1"], lambda c: c.listen.client_advertise == "h:1"),
        (["--ports_file_dir", "/d"], lambda c: c.ports_file_dir == "/d"),
        (["-l", "/log"], lambda c: c.logging.logfile == "/log"),
        (["--log", "/log2"], lambda c: c.logging.logfile == "/log2"),
        (["-T=false"], lambda c: not c.logging.logtime),
        (["--logtime=0"], lambda c: not c.logging.logtime),
        (["--logtime_utc"], lambda c: c.logging.logtime_utc),
        (["-s"], lambda c: c.logging.syslog),
        (["--syslog"], lambda c: c.logging.syslog),
        (["-r", "udp://x:514"], lambda c: c.logging.remote_syslog == "udp://x:514"),
        (["--remote_syslog", "udp://y:514"], lambda c: c.logging.remote_syslog == "udp://y:514"),
        (["-D"], lambda c: c.logging.debug and not c.logging.trace),
        (["--debug"], lambda c: c.logging.debug),
        (["-V"], lambda c: c.logging.trace and not c.logging.debug),
        (["--trace"], lambda c: c.logging.trace),
        (["-VV"], lambda c: c.logging.trace and c.logging.trace_verbose),
        (["-DV"], lambda c: c.logging.debug and c.logging.trace and not c.logging.trace_verbose),
        (["-DVV"], lambda c: c.logging.debug and c.logging.trace and c.logging.trace_verbose),
        (["--log_size_limit", "1000"], lambda c: c.logging.log_size_limit == 1000),
        (["--max_traced_msg_len", "10"], lambda c: c.logging.max_traced_msg_len == 10),
        (["-js"], lambda c: c.jetstream.enabled),
        (["--jetstream"], lambda c: c.jetstream.enabled),
        (["-sd", "/s"], lambda c: c.jetstream.store_dir == "/s"),
        (["--store_dir", "/t"], lambda c: c.jetstream.store_dir == "/t"),
        (["--user", "u", "--pass", "p"], lambda c: (c.auth.user, c.auth.password) == ("u", "p")),
        (["--auth", "tok"], lambda c: c.auth.token == "tok"),
        (["--routes", "nats://a:6222, nats://b:6222"], lambda c: c.cluster.routes == ("nats://a:6222", "nats://b:6222")),
        (["--cluster", "nats://0.0.0.0:6222"], lambda c: (c.cluster.host, c.cluster.port) == ("0.0.0.0", 6222)),
        (["--cluster_listen", "nats://u:p@127.0.0.1:7000"],
         lambda c: (c.cluster.port, c.cluster.user, c.cluster.password) == (7000, "u", "p")),
        (["--cluster_name", "home"], lambda c: c.cluster.name == "home"),
        (["--cluster_advertise", "x:1"], lambda c: c.cluster.advertise == "x:1"),
        (["--no_advertise"], lambda c: c.cluster.no_advertise),
        (["--connect_retries", "3"], lambda c: c.cluster.connect_retries == 3),
        (["--profile", "6060"], lambda c: c.profile_port == 6060),
    ],
)  # fmt: skip
def test_every_flag(argv: list[str], check) -> None:
    assert check(load_config(argv, {}).config)


def test_tls_flags(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("c")
    key.write_text("k")
    config = load_config(
        ["--tlsverify", "--tlscert", str(cert), "--tlskey", str(key), "--tlscacert", str(cert)], {}
    ).config
    assert config.tls is not None and config.tls.verify and config.tls.ca_file == str(cert)
    assert load_config(["--tlscert", str(cert)], {}).config.tls is None  # needs --tls or --tlsverify
    assert load_config(["--tls", "--tlscert", str(cert), "--tlskey", str(key)], {}).config.tls is not None


@pytest.mark.parametrize(
    ("argv", "flag"), [(["-h"], "show_help"), (["--help"], "show_help"), (["-v"], "show_version"),
                       (["--version"], "show_version"), (["--help_tls"], "show_tls_help")],
)  # fmt: skip
def test_one_shot_flags(argv: list[str], flag: str) -> None:
    result = load_config(argv, {})
    assert getattr(result, flag) and "Usage" in result.help_text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-foo"], "flag provided but not defined: -foo"),
        (["--foo=1"], "flag provided but not defined: -foo"),
        (["-p"], "flag needs an argument: -p"),
        (["-p", "abc"], 'invalid value "abc" for flag -p: parse error'),
        (["-js=maybe"], 'invalid boolean value "maybe" for -js: parse error'),
        (["---x"], "bad flag syntax: ---x"),
        (["stray"], "unexpected argument 'stray': jsedge takes options only"),
    ],
)
def test_bad_flags(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(argv, {})
    assert str(caught.value) == message


def test_flags_override_the_file(tmp_path: Path) -> None:
    text = "port: 1111\nserver_name: file\ndebug: true\njetstream { store_dir: /file }\nhttp_port: 1\n"
    config = load_text(tmp_path, text, "-p", "2222", "-n", "flag", "-D=false", "-sd", "/flag", "-m", "2").config
    assert (config.listen.port, config.server_name, config.logging.debug) == (2222, "flag", False)
    assert config.jetstream.store_dir == "/flag" and config.jetstream.enabled and config.monitor.port == 2
    # Flags given before -c win just the same.
    path = tmp_path / "test.conf"
    assert load_config(["-p", "3333", "-c", str(path)], {}).config.listen.port == 3333
    assert load_config(["-c", str(path)], {}).config.config_file == str(path)


# -- durations and reload ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2m", 120.0), ("1h30m", 5400.0), ("500ms", 0.5), ("1.5s", 1.5), ("0", 0.0), ("-1s", -1.0),
     ("10us", 1e-5), ("10µs", 1e-5), ("3ns", 3e-9)],
)  # fmt: skip
def test_parse_go_duration(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [("2d", 'time: unknown unit "d" in duration "2d"'), ("5", 'time: missing unit in duration "5"'),
     ("", 'time: invalid duration ""'), ("s", 'time: invalid duration "s"')],
)  # fmt: skip
def test_parse_go_duration_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_go_duration(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (10, "10s"), (90, "1m30s"), (3600, "1h0m0s"), (0.5, "500ms"), (1.5, "1.5s"), (2e-6, "2µs")],
)
def test_format_go_duration(seconds: float, text: str) -> None:
    assert format_go_duration(seconds) == text


def test_diff_for_reload(tmp_path: Path) -> None:
    old = load_text(tmp_path, "port: 4222\nmax_payload: 1MB\nauthorization { user: a, password: b }\n").config
    same = load_text(tmp_path, "port: 4222\nmax_payload: 1MB\nauthorization { user: a, password: b }\n").config
    assert diff_for_reload(old, same) == ([], [])
    new = load_text(
        tmp_path, "port: 4222\nmax_payload: 2MB\ndebug: true\nauthorization { user: a, password: c }\n"
    ).config
    changed, restart = diff_for_reload(old, new)
    assert changed == ["limits.max_payload: 1048576 -> 2097152", "logging.debug: False -> True", "authorization"]
    assert restart == []
    moved = load_text(tmp_path, "port: 5222\nserver_name: x\njetstream { store_dir: /d }\n").config
    _, restart = diff_for_reload(old, moved)
    assert restart == [
        "config reload not supported for server_name: old=, new=x",
        "config reload not supported for listen.port: old=4222, new=5222",
        "config reload not supported for jetstream.store_dir: old=, new=/d",
    ]


def test_stream_import_with_prefix_and_to_is_refused(tmp_path):
    """nats-server refuses it only when its (random) map order reads `to` after the stream and
    its prefix; jsedge reads in document order and refuses it then."""
    text = (
        "accounts {\n A { exports: [ {stream: ev} ] }\n"
        " B { imports: [ {stream: {account: A, subject: ev}, prefix: p, to: q} ] }\n}\n"
    )
    with pytest.raises(ConfigError, match="Stream import can not have a 'prefix' and a 'to' property"):
        load_text(tmp_path, text)


def test_account_jwt_jetstream_limits_plain_and_tiered():
    """An account JWT enables JetStream with its limits, or with tiered ones (one set per replica
    count; the account-wide figures are then 0, as nats-server shows them)."""
    import nkeys

    from jsedge.config import accounts_from_jwts
    from tests.natsjwt import UNLIMITED_ACCOUNT, encode, new_key

    operator = new_key(nkeys.PREFIX_BYTE_OPERATOR)
    plain, tiered, none = (new_key(nkeys.PREFIX_BYTE_ACCOUNT) for _ in range(3))

    def account(key, **nats):
        body = {"type": "account", "version": 2, "limits": dict(UNLIMITED_ACCOUNT), **nats}
        return key.public, encode({"sub": key.public, "name": "x", "nats": body}, operator)

    accounts = accounts_from_jwts(
        [
            account(plain, limits={**UNLIMITED_ACCOUNT, "mem_storage": -1, "disk_storage": 1024}),
            account(
                tiered,
                limits={
                    **UNLIMITED_ACCOUNT,
                    "tiered_limits": {"R1": {"disk_storage": 2048, "streams": 3}, "R3": {"disk_storage": 1}},
                },
            ),
            account(none),
        ]
    )
    by_name = {a.name: a for a in accounts}
    assert by_name[plain.public].jetstream and by_name[plain.public].jetstream_limits.max_store == 1024
    limits = by_name[tiered.public].jetstream_limits
    assert by_name[tiered.public].jetstream and limits.max_store == 0 and limits.max_streams == 0
    tiers = dict(limits.tiers)
    assert tiers["R1"].max_store == 2048 and tiers["R1"].max_streams == 3 and tiers["R3"].max_store == 1
    assert tiers["R3"].max_streams == -1
    assert not by_name[none.public].jetstream
