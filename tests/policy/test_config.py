"""Tests for addons.policy.config: loading, defaults, and validation by the console's rules.

Every config is YAML text written to tmp_path, so the line numbers the problems name are real.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from wxgate.policy.config import (
    DEFAULT_TIMEOUT_MS,
    AppConfig,
    Config,
    ConfigError,
    DomainEntry,
    Problem,
    check_config,
    judge_business_domain,
    judge_domain_entry,
    load_config,
    parse_domain_entry,
    project_root,
)

APPID = "wx0123456789abcdef"
BUNDLED = Path(__file__).resolve().parents[2] / "config" / "default.yaml"


def write(tmp_path: Path, text: str, name: str = "wxgate.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    """The 1-based line of the only line of `path` that contains `needle`."""
    hits = [n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


def problems_of(path: Path) -> list[Problem]:
    _, problems = check_config(path)
    return problems


def only_problem(path: Path) -> Problem:
    problems = problems_of(path)
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def app_yaml(domains: str = "", extra: str = "", top: str = "") -> str:
    """A one-app config; `domains` and `extra` are indented under the app."""
    body = textwrap.indent(textwrap.dedent(domains).strip("\n"), " " * 6)
    more = textwrap.indent(textwrap.dedent(extra).strip("\n"), " " * 4)
    return (f"{textwrap.dedent(top).strip()}\napps:\n  - appid: {APPID}\n"
            f"    domains:\n{body}\n{more}\n")


# --------------------------------------------------------------------------- the bundled config


def test_bundled_default_config_loads_without_problems() -> None:
    config, problems = check_config(BUNDLED)
    assert problems == []
    assert config is not None
    loaded = load_config(BUNDLED)
    assert loaded.mode == "enforce" and loaded.scope == "miniprogram"
    assert [a.appid for a in loaded.apps] == [APPID]
    assert loaded.passthrough, "the default passthrough list ships in config/default.yaml"


def test_bundled_passthrough_never_tunnels_api_weixin() -> None:
    import re

    config = load_config(BUNDLED)
    assert not any(re.search(p, "api.weixin.qq.com") for p in config.passthrough)
    assert any(re.search(p, "mp.weixin.qq.com") for p in config.passthrough)


def test_empty_file_gives_the_documented_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "# nothing here\n"))
    assert config == Config(source=str(tmp_path / "wxgate.yaml"))
    assert config.limits.concurrency == 10 and config.limits.sockets == 5
    assert config.rules.max_domains == 20 and config.rules.max_timeout_ms == 60000
    assert config.tls.min_version == "1.2"
    assert config.tls.distrusted_issuers == ("WoSign", "StartCom")


def test_full_spec_example_parses_to_the_model(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        mode: report
        scope: all
        allow_lan_ip: true
        passthrough: ['^pinned\\.example\\.com$']
        resolve:
          api.example.com: 127.0.0.1:9443
        block_with: response
        apps:
          - appid: {APPID}
            version: "devtools"
            domains:
              request:      [https://api.example.com, "https://api.example.com:8443"]
              uploadFile:   [https://upload.example.com]
              downloadFile: [https://cdn.example.com]
              connectSocket: [wss://ws.example.com]
            network_timeout:
              request: 5000
        limits:
          concurrency: 4
          concurrency_pool: per_api
          over_concurrency: fail
          sockets: 2
          background_grace_s: 0
        rules:
          max_domains: 30
          max_timeout_ms: 60000
          socket_any_port: true
        tls:
          min_version: "1.3"
          ats: false
          distrusted_issuers: [Example CA]
        faults: [{{match: {{api: request}}, drop: 0.1}}]
        seed: 42
        log:
          path: out.jsonl
          console: json
        control:
          token: s3cret
    """)
    config = load_config(path)
    assert (config.mode, config.scope, config.allow_lan_ip, config.block_with) == (
        "report", "all", True, "response")
    assert config.passthrough == ("^pinned\\.example\\.com$",)
    assert config.resolve == {("api.example.com", None): ("127.0.0.1", 9443)}
    app = config.app(APPID)
    assert isinstance(app, AppConfig) and app.version == "devtools"
    assert app.domains["request"] == (
        DomainEntry("https", "api.example.com", None, "https://api.example.com"),
        DomainEntry("https", "api.example.com", 8443, "https://api.example.com:8443"),
    )
    assert [e.host for e in app.domains["connectSocket"]] == ["ws.example.com"]
    assert app.network_timeout == {"request": 5000, "uploadFile": DEFAULT_TIMEOUT_MS,
                                   "downloadFile": DEFAULT_TIMEOUT_MS,
                                   "connectSocket": DEFAULT_TIMEOUT_MS}
    assert (config.limits.concurrency, config.limits.concurrency_pool,
            config.limits.over_concurrency, config.limits.sockets,
            config.limits.background_grace_s) == (4, "per_api", "fail", 2, 0)
    assert (config.rules.max_domains, config.rules.socket_any_port) == (30, True)
    assert (config.tls.min_version, config.tls.ats, config.tls.distrusted_issuers) == (
        "1.3", False, ("Example CA",))
    assert [(f.kind, f.match.api, f.probability) for f in config.faults] == [
        ("drop", "request", 0.1)]
    assert config.seed == 42
    assert (config.log.path, config.log.console, config.control_token) == (
        "out.jsonl", "json", "s3cret")
    assert config.app("wxffffffffffffffff") is None


# --------------------------------------------------------------------------- every problem, located


def test_four_mistakes_give_exactly_four_located_problems(tmp_path: Path) -> None:
    request = "".join(f"        - https://a{i}.example.com\n" for i in range(21))
    path = write(tmp_path, (
        "mode: enforce\n"
        "apps:\n"
        f"  - appid: {APPID}\n"
        "    domains:\n"
        "      request:\n"
        f"{request}"
        "      uploadFile:\n"
        "        - https://1.2.3.4\n"
        "        - http://up.example.com\n"
        "limits:\n"
        "  concurency: 5\n"
    ))
    found = {(p.line, p.key, p.rule) for p in problems_of(path)}
    assert found == {
        (line_of(path, "request:"), "apps[0].domains.request", "config.too_many_domains"),
        (line_of(path, "1.2.3.4"), "apps[0].domains.uploadFile", "config.ip_address"),
        (line_of(path, "http://up"), "apps[0].domains.uploadFile", "config.scheme"),
        (line_of(path, "concurency"), "limits.concurency", None),
    }
    problems = problems_of(path)
    assert len(problems) == 4
    assert sorted(p.line or 0 for p in problems) == [5, 28, 29, 31]
    typo = next(p for p in problems if p.key == "limits.concurency")
    assert "did you mean 'concurrency'?" in typo.message
    too_many = next(p for p in problems if p.rule == "config.too_many_domains")
    assert "21" in too_many.message and "20" in too_many.message


@pytest.mark.parametrize(("key", "suggestion"), [
    pytest.param("allow_lan_ips", "allow_lan_ip", id="plural"),
    pytest.param("moed", "mode", id="transposed"),
    pytest.param("limit", "limits", id="singular"),
    pytest.param("passthru", "passthrough", id="abbreviated"),
])
def test_unknown_top_level_key_suggests_the_close_one(
    tmp_path: Path, key: str, suggestion: str
) -> None:
    path = write(tmp_path, f"mode: enforce\n{key}: 1\n")
    problem = only_problem(path)
    assert (problem.line, problem.key) == (2, key)
    assert problem.message == f"unknown key '{key}'; did you mean '{suggestion}'?"


def test_unknown_key_with_no_close_match_lists_the_known_keys(tmp_path: Path) -> None:
    problem = only_problem(write(tmp_path, "limits:\n  sockets: 5\n  zzzzz: 1\n"))
    assert (problem.line, problem.key) == (3, "limits.zzzzz")
    assert "known: concurrency" in problem.message


@pytest.mark.parametrize(("yaml_text", "line", "key", "fragment"), [
    pytest.param("mode: 3\n", 1, "mode", "must be a string, not an integer 3", id="mode-int"),
    pytest.param("log:\n  path: x\nlimits:\n  sockets: \"x\"\n", 4, "limits.sockets",
                 "must be an integer, not a string 'x'", id="sockets-string"),
    pytest.param("limits:\n  concurrency: yes\n", 2, "limits.concurrency",
                 "must be an integer, not a boolean True", id="yes-as-int"),
    pytest.param("allow_lan_ip: 1\n", 1, "allow_lan_ip", "must be true or false",
                 id="int-as-bool"),
    pytest.param("limits:\n  concurrency: 0\n", 2, "limits.concurrency", "at least 1",
                 id="concurrency-zero"),
    pytest.param("limits:\n  background_grace_s: -1\n", 2, "limits.background_grace_s",
                 "at least 0", id="negative-grace"),
    pytest.param("rules:\n  max_domains: 0\n", 2, "rules.max_domains", "at least 1",
                 id="max-domains-zero"),
    pytest.param("apps: {}\n", 1, "apps", "must be a list, not a mapping", id="apps-mapping"),
    pytest.param("limits: [1]\n", 1, "limits", "must be a mapping, not a list",
                 id="section-list"),
    pytest.param("passthrough:\n  - ok\n  - 3\n", 3, "passthrough[1]",
                 "must be a string, not an integer", id="passthrough-item"),
    pytest.param("passthrough:\n  - '('\n", 2, "passthrough", "not a valid regex",
                 id="passthrough-regex"),
    pytest.param("tls:\n  distrusted_issuers: WoSign\n", 2, "tls.distrusted_issuers",
                 "must be a list", id="issuers-string"),
    pytest.param("tls:\n  min_version: \"1.4\"\n", 2, "tls.min_version", "'1.4'",
                 id="tls-version"),
    pytest.param("seed: x\n", 1, "seed", "must be an integer", id="seed-string"),
    pytest.param("control:\n  token: 5\n", 2, "control.token", "must be a string",
                 id="token-int"),
    pytest.param("faults: {}\n", 1, "faults", "must be a list", id="faults-mapping"),
    pytest.param("- a\n- b\n", 1, "(top level)", "must be a mapping, not a list",
                 id="top-level-list"),
])
def test_wrong_type_or_value_is_located(
    tmp_path: Path, yaml_text: str, line: int, key: str, fragment: str
) -> None:
    problem = only_problem(write(tmp_path, yaml_text))
    assert (problem.line, problem.key, problem.rule) == (line, key, None)
    assert fragment in problem.message


@pytest.mark.parametrize(("yaml_text", "line", "key", "message"), [
    pytest.param("scope: all\nmode: enforcing\n", 2, "mode",
                 "must be 'enforce' or 'report', not 'enforcing'", id="mode"),
    pytest.param("scope: everything\n", 1, "scope",
                 "must be 'miniprogram' or 'all', not 'everything'", id="scope"),
    pytest.param("block_with: error\n", 1, "block_with",
                 "must be 'fail' or 'response', not 'error'", id="block_with"),
    pytest.param("limits:\n  over_concurrency: drop\n", 2, "limits.over_concurrency",
                 "must be 'queue' or 'fail', not 'drop'", id="over_concurrency"),
    pytest.param("limits:\n  concurrency_pool: global\n", 2, "limits.concurrency_pool",
                 "must be 'shared' or 'per_api', not 'global'", id="concurrency_pool"),
    pytest.param("log:\n  console: loud\n", 2, "log.console",
                 "must be 'pretty' or 'json' or 'off', not 'loud'", id="log-console"),
])
def test_value_outside_its_choices_is_located(
    tmp_path: Path, yaml_text: str, line: int, key: str, message: str
) -> None:
    problem = only_problem(write(tmp_path, yaml_text))
    assert (problem.line, problem.key, problem.message) == (line, key, message)


# --------------------------------------------------------------------------- console rules


@pytest.mark.parametrize(("api", "entry", "rule"), [
    pytest.param("request", "https://localhost", "config.localhost", id="localhost"),
    pytest.param("request", "https://LOCALHOST:8443", "config.localhost", id="localhost-port"),
    pytest.param("downloadFile", "https://cdn.localhost", "config.localhost", id="sub-localhost"),
    pytest.param("request", "https://api.weixin.qq.com", "config.forbidden", id="forbidden"),
    pytest.param("uploadFile", "https://API.weixin.qq.com", "config.forbidden",
                 id="forbidden-case"),
    pytest.param("request", "wss://ws.example.com", "config.scheme", id="wss-in-request"),
    pytest.param("request", "http://api.example.com", "config.scheme", id="http-in-request"),
    pytest.param("connectSocket", "https://ws.example.com", "config.scheme",
                 id="https-in-connectSocket"),
    pytest.param("connectSocket", "ws://ws.example.com", "config.scheme", id="ws-in-socket"),
    pytest.param("request", "https://10.0.0.1", "config.ip_address", id="ip"),
    pytest.param("request", "https://[::1]", "config.ip_address", id="ipv6"),
    pytest.param("request", "https://2130706433", "config.ip_address", id="ip-decimal"),
    pytest.param("request", "https://api.example.com/v1", "config.invalid", id="path"),
    pytest.param("request", "https://*.example.com", "config.invalid", id="wildcard"),
    pytest.param("request", "https://user@api.example.com", "config.invalid", id="userinfo"),
    pytest.param("request", "https://api..example.com", "config.invalid", id="empty-label"),
    pytest.param("request", "api.example.com", "config.invalid", id="no-scheme"),
    pytest.param("request", "https://", "config.invalid", id="no-host"),
    pytest.param("request", "https://api.example.com:0", "config.invalid", id="port-zero"),
    pytest.param("request", "https://api.example.com:70000", "config.invalid",
                 id="port-too-big"),
])
def test_entry_the_console_refuses_is_a_located_config_rule(
    tmp_path: Path, api: str, entry: str, rule: str
) -> None:
    path = write(tmp_path, app_yaml(f"{api}:\n  - https://ok.example.com\n  - '{entry}'\n"
                                    if api != "connectSocket" else
                                    f"{api}:\n  - wss://ok.example.com\n  - '{entry}'\n"))
    problem = only_problem(path)
    assert (problem.line, problem.key, problem.rule) == (
        line_of(path, f"'{entry}'"), f"apps[0].domains.{api}", rule)
    assert entry in problem.message
    with pytest.raises(ConfigError):
        load_config(path)


@pytest.mark.parametrize(("raw", "expected"), [
    pytest.param("https://api.example.com", DomainEntry("https", "api.example.com", None,
                                                        "https://api.example.com"), id="plain"),
    pytest.param("https://api.example.com/", DomainEntry("https", "api.example.com", None,
                                                         "https://api.example.com/"),
                 id="trailing-slash"),
    pytest.param("HTTPS://API.Example.COM:8443",
                 DomainEntry("https", "api.example.com", 8443, "HTTPS://API.Example.COM:8443"),
                 id="case-and-port"),
    pytest.param("wss://bücher.example", DomainEntry("wss", "xn--bcher-kva.example", None,
                                                     "wss://bücher.example"), id="idn"),
    pytest.param("https://a.example.com/path", None, id="path"),
    pytest.param("a.example.com", None, id="no-scheme"),
])
def test_parse_domain_entry_normalises_host_and_port(
    raw: str, expected: DomainEntry | None
) -> None:
    assert parse_domain_entry(raw) == expected


@pytest.mark.parametrize(("api", "raw"), [
    pytest.param("request", "https://api.example.com", id="request"),
    pytest.param("request", "https://api.example.com:8443", id="request-port"),
    pytest.param("uploadFile", "https://upload.example.com", id="upload"),
    pytest.param("downloadFile", "https://cdn.example.com", id="download"),
    pytest.param("connectSocket", "wss://ws.example.com:9000", id="socket"),
    pytest.param("request", "https://weixin.qq.com", id="other-qq-host"),
    pytest.param("request", "https://bücher.example", id="idn"),
    pytest.param("request", "https://xn--bcher-kva.example", id="punycode"),
    pytest.param("request", "https://a_b-c.example.com", id="underscore-and-hyphen"),
])
def test_judge_domain_entry_accepts_a_console_valid_entry(api: str, raw: str) -> None:
    assert judge_domain_entry(api, raw) is None


@pytest.mark.parametrize(("max_domains", "count", "expected"), [
    pytest.param(None, 20, [], id="default-20-ok"),
    pytest.param(None, 21, ["config.too_many_domains"], id="default-21-too-many"),
    pytest.param(2, 3, ["config.too_many_domains"], id="lowered-to-2"),
    pytest.param(30, 21, [], id="raised-to-30"),
])
def test_max_domains_sets_the_per_interface_limit(
    tmp_path: Path, max_domains: int | None, count: int, expected: list[str]
) -> None:
    entries = "\n".join(f"  - https://d{i}.example.com" for i in range(count))
    top = f"rules:\n  max_domains: {max_domains}\n" if max_domains else ""
    path = write(tmp_path, app_yaml(f"downloadFile:\n{entries}\n", top=top))
    problems = problems_of(path)
    assert [p.rule for p in problems] == expected
    for problem in problems:
        assert (problem.line, problem.key) == (line_of(path, "downloadFile:"),
                                               "apps[0].domains.downloadFile")


def test_duplicate_entries_count_once_toward_max_domains(tmp_path: Path) -> None:
    entries = "\n".join(f"  - https://d{i}.example.com" for i in range(20))
    path = write(tmp_path, app_yaml(f"request:\n{entries}\n  - https://D0.example.com\n"
                                    "  - https://d1.example.com/\n"))
    config = load_config(path)
    assert len(config.apps[0].domains["request"]) == 20


# --------------------------------------------------------------------------- timeouts


@pytest.mark.parametrize(("top", "timeout", "rule"), [
    pytest.param("", 60000, None, id="60000-is-the-max"),
    pytest.param("", 60001, "config.timeout", id="above-60000"),
    pytest.param("rules:\n  max_timeout_ms: 30000\n", 30000, None, id="lowered-bar-at-max"),
    pytest.param("rules:\n  max_timeout_ms: 30000\n", 40000, "config.timeout",
                 id="lowered-bar-exceeded"),
    pytest.param("rules:\n  max_timeout_ms: 90000\n", 80000, None, id="raised-bar"),
])
def test_network_timeout_above_max_timeout_ms_is_config_timeout(
    tmp_path: Path, top: str, timeout: int, rule: str | None
) -> None:
    path = write(tmp_path, app_yaml("request: [https://api.example.com]",
                                    f"network_timeout:\n  uploadFile: {timeout}\n", top=top))
    problems = problems_of(path)
    assert [p.rule for p in problems] == ([rule] if rule else [])
    if rule:
        assert (problems[0].line, problems[0].key) == (
            line_of(path, f"uploadFile: {timeout}"), "apps[0].network_timeout.uploadFile")
        assert str(timeout) in problems[0].message
    else:
        assert load_config(path).apps[0].network_timeout["uploadFile"] == timeout


def test_lowered_max_timeout_caps_the_unwritten_defaults_without_a_problem(
    tmp_path: Path
) -> None:
    path = write(tmp_path, app_yaml("request: [https://api.example.com]",
                                    top="rules:\n  max_timeout_ms: 30000\n"))
    config = load_config(path)
    assert dict(config.apps[0].network_timeout) == {
        "request": 30000, "uploadFile": 30000, "downloadFile": 30000, "connectSocket": 30000}


def test_raised_max_timeout_keeps_the_60000_default(tmp_path: Path) -> None:
    path = write(tmp_path, app_yaml("request: [https://api.example.com]",
                                    top="rules:\n  max_timeout_ms: 120000\n"))
    assert set(load_config(path).apps[0].network_timeout.values()) == {DEFAULT_TIMEOUT_MS}


@pytest.mark.parametrize(("value", "fragment"), [
    pytest.param("0", "at least 1", id="zero"),
    pytest.param("fast", "must be an integer", id="string"),
])
def test_network_timeout_bad_value_is_located(tmp_path: Path, value: str, fragment: str) -> None:
    path = write(tmp_path, app_yaml("request: [https://api.example.com]",
                                    f"network_timeout:\n  request: {value}\n"))
    problem = only_problem(path)
    assert (problem.line, problem.key) == (line_of(path, f"request: {value}"),
                                           "apps[0].network_timeout.request")
    assert fragment in problem.message


# --------------------------------------------------------------------------- apps


@pytest.mark.parametrize(("version", "expected"), [
    pytest.param('"0"', "0", id="develop"),
    pytest.param("0", "0", id="develop-int"),
    pytest.param("devtools", "devtools", id="devtools"),
    pytest.param("123", "123", id="release-int"),
])
def test_app_version_is_a_referer_version(tmp_path: Path, version: str, expected: str) -> None:
    path = write(tmp_path, app_yaml("request: [https://api.example.com]",
                                    f"version: {version}\n"))
    assert load_config(path).apps[0].version == expected


@pytest.mark.parametrize("version", ["beta", '"1.2.3"', '""'])
def test_app_version_the_referer_cannot_carry_is_located(tmp_path: Path, version: str) -> None:
    path = write(tmp_path, app_yaml("request: [https://api.example.com]",
                                    f"version: {version}\n"))
    problem = only_problem(path)
    assert (problem.line, problem.key) == (line_of(path, "version:"), "apps[0].version")


@pytest.mark.parametrize(("app_text", "key", "fragment"), [
    pytest.param("  - appid: wx123\n", "apps[0].appid", "is not an appid", id="short-appid"),
    pytest.param("  - version: \"0\"\n", "apps[0].appid", "is missing", id="no-appid"),
    pytest.param(f"  - appid: {APPID}\n  - appid: {APPID}\n", "apps[1].appid", "listed twice",
                 id="duplicate-appid"),
    pytest.param(f"  - appid: {APPID}\n    domain: {{}}\n", "apps[0].domain",
                 "did you mean 'domains'?", id="app-key-typo"),
    pytest.param(f"  - appid: {APPID}\n    domains:\n      socket: []\n",
                 "apps[0].domains.socket", "unknown key 'socket'", id="domains-key-typo"),
    pytest.param(f"  - appid: {APPID}\n    domains:\n      request: https://a.example.com\n",
                 "apps[0].domains.request", "must be a list", id="domains-not-a-list"),
])
def test_app_problem_is_located(tmp_path: Path, app_text: str, key: str, fragment: str) -> None:
    path = write(tmp_path, "apps:\n" + app_text)
    problem = only_problem(path)
    assert problem.key == key and fragment in problem.message
    assert problem.line is not None and problem.line > 1


# --------------------------------------------------------------------------- domains_file


def test_domains_file_json_is_merged_and_validated(tmp_path: Path) -> None:
    (tmp_path / "domains.json").write_text(json.dumps({
        "errcode": 0, "errmsg": "ok",
        "requestdomain": ["https://json-api.example.com", "https://api.example.com"],
        "wsrequestdomain": ["wss://json-ws.example.com"],
        "uploaddomain": ["https://json-up.example.com"],
        "downloaddomain": ["https://json-cdn.example.com"],
    }))
    path = write(tmp_path, app_yaml("request: [https://api.example.com]",
                                    "domains_file: domains.json\n"))
    app = load_config(path).apps[0]
    assert {api: [e.host for e in app.domains[api]] for api in app.domains} == {
        "request": ["api.example.com", "json-api.example.com"],
        "uploadFile": ["json-up.example.com"],
        "downloadFile": ["json-cdn.example.com"],
        "connectSocket": ["json-ws.example.com"],
    }


@pytest.mark.parametrize(("json_key", "entry", "rule"), [
    pytest.param("requestdomain", "http://a.example.com", "config.scheme", id="request-http"),
    pytest.param("wsrequestdomain", "https://ws.example.com", "config.scheme", id="ws-https"),
    pytest.param("uploaddomain", "https://1.2.3.4", "config.ip_address", id="upload-ip"),
    pytest.param("downloaddomain", "https://localhost", "config.localhost", id="download-local"),
])
def test_domains_file_entry_the_console_refuses_is_located_at_domains_file(
    tmp_path: Path, json_key: str, entry: str, rule: str
) -> None:
    (tmp_path / "d.json").write_text(json.dumps({json_key: [entry]}))
    path = write(tmp_path, app_yaml("request: [https://api.example.com]",
                                    "domains_file: d.json\n"))
    problem = only_problem(path)
    assert (problem.line, problem.rule) == (line_of(path, "domains_file:"), rule)
    assert json_key in problem.key and entry in problem.message


def test_domains_file_counts_toward_max_domains(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text(json.dumps(
        {"requestdomain": [f"https://j{i}.example.com" for i in range(20)]}))
    path = write(tmp_path, app_yaml("request: [https://api.example.com]",
                                    "domains_file: d.json\n"))
    assert [p.rule for p in problems_of(path)] == ["config.too_many_domains"]


def test_domains_file_with_broken_json_gives_one_problem_naming_the_json_line(
    tmp_path: Path
) -> None:
    (tmp_path / "broken.json").write_text(
        '{\n  "requestdomain": [\n    "https://a.example.com",\n  ]\n}\n')
    path = write(tmp_path, app_yaml("request: [https://api.example.com]",
                                    "domains_file: broken.json\n"))
    problem = only_problem(path)
    assert (problem.line, problem.key) == (line_of(path, "domains_file:"),
                                           "apps[0].domains_file")
    assert "broken.json line 4 is not valid JSON" in problem.message


@pytest.mark.parametrize(("content", "fragment"), [
    pytest.param(None, "does not exist", id="missing"),
    pytest.param("[1, 2]", "must hold a JSON object", id="array"),
])
def test_domains_file_missing_or_not_an_object_is_located(
    tmp_path: Path, content: str | None, fragment: str
) -> None:
    if content is not None:
        (tmp_path / "d.json").write_text(content)
    path = write(tmp_path, app_yaml("request: [https://api.example.com]",
                                    "domains_file: d.json\n"))
    problem = only_problem(path)
    assert problem.line == line_of(path, "domains_file:")
    assert fragment in problem.message


def test_domains_file_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "d.json").write_text(json.dumps(
        {"requestdomain": ["https://rel.example.com"]}))
    path = write(tmp_path, app_yaml("request: []", "domains_file: d.json\n"), "conf/w.yaml")
    assert [e.host for e in load_config(path).apps[0].domains["request"]] == ["rel.example.com"]


# --------------------------------------------------------------------------- project


def make_project(
    root: Path, project_config: dict[str, object], files: dict[str, dict[str, object]]
) -> None:
    root.mkdir(parents=True)
    (root / "project.config.json").write_text(json.dumps(project_config))
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(json.dumps(data))


def test_project_gives_appid_url_check_and_app_json_timeouts(tmp_path: Path) -> None:
    make_project(tmp_path / "mp", {"appid": APPID, "setting": {"urlCheck": False}},
                 {"app.json": {"pages": ["pages/index/index"],
                               "networkTimeout": {"request": 5000, "downloadFile": 8000}}})
    path = write(tmp_path, "apps:\n  - project: mp\n    domains:\n"
                           "      request: [https://api.example.com]\n")
    app = load_config(path).apps[0]
    assert (app.appid, app.url_check, app.project) == (APPID, False, "mp")
    assert dict(app.network_timeout) == {"request": 5000, "uploadFile": DEFAULT_TIMEOUT_MS,
                                         "downloadFile": 8000,
                                         "connectSocket": DEFAULT_TIMEOUT_MS}


def test_mini_game_project_reads_game_json(tmp_path: Path) -> None:
    make_project(tmp_path / "game", {"appid": APPID, "compileType": "game",
                                     "setting": {"urlCheck": True}},
                 {"game.json": {"networkTimeout": {"connectSocket": 3000}}})
    path = write(tmp_path, f"apps:\n  - appid: {APPID}\n    project: game\n")
    app = load_config(path).apps[0]
    assert app.url_check is True
    assert app.network_timeout["connectSocket"] == 3000


def test_project_miniprogram_root_locates_app_json(tmp_path: Path) -> None:
    make_project(tmp_path / "mp", {"appid": APPID, "miniprogramRoot": "miniprogram/"},
                 {"miniprogram/app.json": {"networkTimeout": {"uploadFile": 7000}},
                  "app.json": {"networkTimeout": {"uploadFile": 1}}})
    path = write(tmp_path, "apps:\n  - project: mp\n")
    assert load_config(path).apps[0].network_timeout["uploadFile"] == 7000


def test_config_network_timeout_overrides_the_project(tmp_path: Path) -> None:
    make_project(tmp_path / "mp", {"appid": APPID},
                 {"app.json": {"networkTimeout": {"request": 5000}}})
    path = write(tmp_path, "apps:\n  - project: mp\n    network_timeout:\n      request: 9000\n")
    assert load_config(path).apps[0].network_timeout["request"] == 9000


def test_project_timeout_above_the_max_is_located_in_app_json(tmp_path: Path) -> None:
    make_project(tmp_path / "mp", {"appid": APPID},
                 {"app.json": {"networkTimeout": {"request": 70000}}})
    path = write(tmp_path, "apps:\n  - project: mp\n")
    problem = only_problem(path)
    app_json = tmp_path / "mp" / "app.json"
    assert str(problem) == (f"{app_json}:1: networkTimeout.request: is 70000 ms; the client "
                            "allows at most 60000 [config.timeout]")


def test_project_appid_mismatch_is_one_problem_at_the_yaml_appid(tmp_path: Path) -> None:
    make_project(tmp_path / "mp", {"appid": "wx1111111111111111"}, {})
    path = write(tmp_path, f"apps:\n  - appid: {APPID}\n    project: mp\n")
    problem = only_problem(path)
    assert str(problem) == (f"{path}:2: apps[0].appid: {APPID} is not the appid that "
                            f"{tmp_path / 'mp' / 'project.config.json'} gives "
                            "(wx1111111111111111)")


def test_project_that_is_not_a_directory_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, f"apps:\n  - appid: {APPID}\n    project: nowhere\n")
    problem = only_problem(path)
    assert (problem.line, problem.key) == (3, "apps[0].project")
    assert "is not a directory" in problem.message


def write_json(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


@pytest.mark.parametrize(("raw", "expected"), [
    ("miniprogram", "miniprogram"),
    ("miniprogram/", "miniprogram"),
    ("./miniprogram", "miniprogram"),
    ("./miniprogram/", "miniprogram"),
    (".\\miniprogram\\", "miniprogram"),
    ("src\\miniprogram", "src/miniprogram"),
    ("./", "."),
    ("", "."),
])
def test_project_root_is_read_the_way_devtools_reads_it(raw: str, expected: str) -> None:
    assert project_root(raw) == expected


@pytest.mark.parametrize(("public", "private", "expected", "source"), [
    pytest.param(True, False, False, "project.private.config.json", id="private-turns-off"),
    pytest.param(False, True, True, "project.private.config.json", id="private-turns-on"),
    pytest.param(False, None, False, "project.config.json", id="no-private-setting"),
    pytest.param(None, True, True, "project.private.config.json", id="only-private"),
])
def test_private_project_setting_overrides_the_public_one(
    tmp_path: Path, public: bool | None, private: bool | None, expected: bool, source: str
) -> None:
    setting = {} if public is None else {"urlCheck": public}
    make_project(tmp_path / "mp", {"appid": APPID, "setting": setting},
                 {"project.private.config.json":
                  {"setting": {} if private is None else {"urlCheck": private}}})
    app = load_config(write(tmp_path, "apps:\n  - project: mp\n")).apps[0]
    assert app.url_check is expected
    assert app.sources["url_check"].startswith(str(tmp_path / "mp" / source) + ":")


def test_missing_miniprogram_root_is_a_warning_and_the_timeouts_are_the_defaults(
    tmp_path: Path
) -> None:
    cfg = write_json(tmp_path / "mp" / "project.config.json", f"""
        {{
          "appid": "{APPID}",
          "miniprogramRoot": "dist/"
        }}
    """)
    path = write(tmp_path, "apps:\n  - project: mp\n")
    config, problems = check_config(path)
    assert problems == []
    (warning,) = config.warnings
    assert str(warning) == (
        f"{cfg}:3: warning: miniprogramRoot: 'dist/' is not a folder in {tmp_path / 'mp'} (a "
        "Taro or uni-app project before its build?): networkTimeout is not read, so the "
        "timeouts are the default 60000 ms")
    assert set(config.apps[0].network_timeout.values()) == {DEFAULT_TIMEOUT_MS}
    assert load_config(path).apps[0].appid == APPID  # a warning never stops the config


def test_missing_app_json_is_a_warning_naming_the_file(tmp_path: Path) -> None:
    make_project(tmp_path / "mp", {"appid": APPID, "miniprogramRoot": "miniprogram"},
                 {"miniprogram/pages.txt": {}})
    path = write(tmp_path, "apps:\n  - project: mp\n")
    (warning,) = check_config(path)[0].warnings
    assert str(warning) == (f"{tmp_path / 'mp' / 'miniprogram' / 'app.json'}: warning: (file): "
                            "does not exist: networkTimeout is not read, so the timeouts are "
                            "the default 60000 ms")


def test_missing_root_warning_names_the_timeouts_network_timeout_leaves_to_default(
    tmp_path: Path
) -> None:
    make_project(tmp_path / "mp", {"appid": APPID, "miniprogramRoot": "dist"}, {})
    path = write(tmp_path, "apps:\n  - project: mp\n    network_timeout:\n"
                           "      request: 10000\n")
    (warning,) = check_config(path)[0].warnings
    assert warning.message.endswith(
        "so the timeouts apps[0].network_timeout does not set are the default 60000 ms")


def test_missing_root_is_no_warning_when_network_timeout_sets_every_timeout(
    tmp_path: Path
) -> None:
    make_project(tmp_path / "mp", {"appid": APPID, "miniprogramRoot": "dist"}, {})
    timeouts = "".join(f"      {api}: 10000\n" for api in
                       ("request", "uploadFile", "downloadFile", "connectSocket"))
    path = write(tmp_path, f"apps:\n  - project: mp\n    network_timeout:\n{timeouts}")
    config, problems = check_config(path)
    assert (problems, config.warnings) == ([], ())


@pytest.mark.parametrize(("value", "shown"), [
    pytest.param('"10000"', 'is a string "10000"', id="string"),
    pytest.param("10000.5", "is a number 10000.5", id="fraction"),
    pytest.param("true", "is a boolean true", id="boolean"),
    pytest.param("null", "is empty null", id="null"),
])
def test_project_timeout_that_is_not_an_integer_is_config_timeout_in_app_json(
    tmp_path: Path, value: str, shown: str
) -> None:
    make_project(tmp_path / "mp", {"appid": APPID}, {})
    app_json = write_json(tmp_path / "mp" / "app.json", f"""
        {{
          "pages": ["pages/index/index"],
          "networkTimeout": {{
            "request": {value}
          }}
        }}
    """)
    problem = only_problem(write(tmp_path, "apps:\n  - project: mp\n"))
    assert str(problem) == (f"{app_json}:4: networkTimeout.request: {shown}; a networkTimeout "
                            "is an integer number of milliseconds [config.timeout]")


def test_project_timeout_written_as_a_whole_float_is_taken(tmp_path: Path) -> None:
    make_project(tmp_path / "mp", {"appid": APPID}, {})
    write_json(tmp_path / "mp" / "app.json", '{"networkTimeout": {"request": 10000.0}}')
    app = load_config(write(tmp_path, "apps:\n  - project: mp\n")).apps[0]
    assert app.network_timeout["request"] == 10000


def test_project_network_timeout_that_is_not_an_object_is_config_timeout(tmp_path: Path) -> None:
    make_project(tmp_path / "mp", {"appid": APPID}, {"app.json": {"networkTimeout": 10000}})
    problem = only_problem(write(tmp_path, "apps:\n  - project: mp\n"))
    assert (problem.file, problem.key, problem.rule) == (
        str(tmp_path / "mp" / "app.json"), "networkTimeout", "config.timeout")


def test_network_timeout_in_the_yaml_overrides_a_bad_project_value(tmp_path: Path) -> None:
    make_project(tmp_path / "mp", {"appid": APPID},
                 {"app.json": {"networkTimeout": {"request": "10000"}}})
    path = write(tmp_path, "apps:\n  - project: mp\n    network_timeout:\n"
                           "      request: 9000\n")
    assert load_config(path).apps[0].network_timeout["request"] == 9000


@pytest.mark.parametrize("placeholder", ["touristappid", "", "appid", "wxYOURAPPIDHERE"])
def test_yaml_appid_wins_over_a_project_appid_that_is_not_real(
    tmp_path: Path, placeholder: str
) -> None:
    make_project(tmp_path / "mp", {"appid": placeholder}, {})
    path = write(tmp_path, f"apps:\n  - appid: {APPID}\n    project: mp\n")
    config, problems = check_config(path)
    assert (problems, config.apps[0].appid) == ([], APPID)
    assert config.apps[0].sources["appid"] == f"{path}:2"


@pytest.mark.parametrize(("written", "reason"), [
    pytest.param('"wxYOURAPPIDHERE"', '"wxYOURAPPIDHERE" is not an appid (wx followed by 16 '
                 "hex digits, or touristappid)", id="placeholder"),
    pytest.param('"appid"', '"appid" is not an appid (wx followed by 16 hex digits, or '
                 "touristappid)", id="word"),
    pytest.param('""', "is empty", id="empty"),
])
def test_project_appid_that_is_not_real_is_located_in_project_config_json(
    tmp_path: Path, written: str, reason: str
) -> None:
    cfg = write_json(tmp_path / "mp" / "project.config.json", f"""
        {{
          "compileType": "game",
          "appid": {written}
        }}
    """)
    problem = only_problem(write(tmp_path, "apps:\n  - project: mp\n"))
    assert str(problem) == f"{cfg}:3: appid: {reason}: give the app's appid in apps[0].appid"


def test_project_without_an_appid_asks_for_one_in_the_yaml(tmp_path: Path) -> None:
    make_project(tmp_path / "mp", {"compileType": "miniprogram"}, {})
    problem = only_problem(write(tmp_path, "apps:\n  - project: mp\n"))
    assert str(problem) == (f"{tmp_path / 'mp' / 'project.config.json'}: appid: is missing: "
                            "give the app's appid in apps[0].appid")


def test_tourist_mode_project_gives_the_appid_touristappid(tmp_path: Path) -> None:
    make_project(tmp_path / "mp", {"appid": "touristappid"}, {"app.json": {}})
    app = load_config(write(tmp_path, "apps:\n  - project: mp\n")).apps[0]
    assert app.appid == "touristappid"


def test_touristappid_is_a_valid_appid_in_the_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "apps:\n  - appid: touristappid\n    version: devtools\n")
    assert load_config(path).apps[0].appid == "touristappid"


def test_mini_game_reads_game_json_even_with_an_app_json(tmp_path: Path) -> None:
    make_project(tmp_path / "game", {"appid": APPID, "compileType": "game"},
                 {"game.json": {"networkTimeout": {"request": 5000}},
                  "app.json": {"networkTimeout": {"request": 20000}}})
    app = load_config(write(tmp_path, "apps:\n  - project: game\n")).apps[0]
    assert app.network_timeout["request"] == 5000
    assert app.sources["network_timeout.request"].startswith(
        str(tmp_path / "game" / "game.json"))


def test_mini_game_follows_minigame_root(tmp_path: Path) -> None:
    make_project(tmp_path / "game", {"appid": APPID, "compileType": "game",
                                     "minigameRoot": "./build/wechatgame/"},
                 {"build/wechatgame/game.json": {"networkTimeout": {"connectSocket": 4000}}})
    app = load_config(write(tmp_path, "apps:\n  - project: game\n")).apps[0]
    assert app.network_timeout["connectSocket"] == 4000


def test_folder_without_project_config_json_is_read_when_the_yaml_gives_the_appid(
    tmp_path: Path
) -> None:
    (tmp_path / "mp").mkdir()
    (tmp_path / "mp" / "app.json").write_text('{"networkTimeout": {"request": 8000}}')
    path = write(tmp_path, f"apps:\n  - appid: {APPID}\n    project: mp\n")
    app = load_config(path).apps[0]
    assert (app.appid, app.network_timeout["request"], app.url_check) == (APPID, 8000, None)


def test_folder_without_project_config_json_and_no_yaml_appid_is_one_problem(
    tmp_path: Path
) -> None:
    (tmp_path / "mp").mkdir()
    path = write(tmp_path, "apps:\n  - project: mp\n")
    assert str(only_problem(path)) == (f"{path}:2: apps[0].appid: is missing, and "
                                       f"{tmp_path / 'mp'} has no project.config.json to give it")


def test_broken_project_json_is_located_in_that_file(tmp_path: Path) -> None:
    (tmp_path / "mp").mkdir()
    cfg = write_json(tmp_path / "mp" / "project.config.json", '{\n  "appid": "wx",,\n}\n')
    path = write(tmp_path, f"apps:\n  - appid: {APPID}\n    project: mp\n")
    problem = only_problem(path)
    assert (problem.file, problem.line, problem.key) == (str(cfg), 2, "(json)")
    assert problem.message.startswith("is not valid JSON: ")


def test_every_value_names_the_file_it_came_from(tmp_path: Path) -> None:
    make_project(tmp_path / "mp", {"appid": APPID, "setting": {"urlCheck": True}},
                 {"app.json": {"networkTimeout": {"request": 5000}}})
    (tmp_path / "d.json").write_text('{"downloaddomain": ["https://cdn.example.com"]}')
    path = write(tmp_path, "apps:\n  - project: mp\n    version: devtools\n"
                           "    domains_file: d.json\n    domains:\n"
                           "      request: [https://api.example.com]\n")
    sources = load_config(path).apps[0].sources
    mp = tmp_path / "mp"
    assert sources == {
        "version": f"{path}:3",
        "appid": f"{mp / 'project.config.json'}:1",
        "url_check": f"{mp / 'project.config.json'}:1",
        "domains.request": f"{path}:6",
        "domains.uploadFile": "",
        "domains.downloadFile": f"{tmp_path / 'd.json'}:downloaddomain",
        "domains.connectSocket": "",
        "network_timeout.request": f"{mp / 'app.json'}:1",
        "network_timeout.uploadFile": "default",
        "network_timeout.downloadFile": "default",
        "network_timeout.connectSocket": "default",
    }


# --------------------------------------------------------------------------- resolve


def test_resolve_entries_parse_host_and_host_port_keys(tmp_path: Path) -> None:
    path = write(tmp_path, """
        resolve:
          api.example.com: 127.0.0.1:9443
          "API.Example.com:8443": "[::1]:9444"
          ws.example.com: staging.internal:443
    """)
    assert load_config(path).resolve == {
        ("api.example.com", None): ("127.0.0.1", 9443),
        ("api.example.com", 8443): ("::1", 9444),
        ("ws.example.com", None): ("staging.internal", 443),
    }


@pytest.mark.parametrize(("entry", "key", "fragment"), [
    pytest.param("bad host: 1.2.3.4:1", "resolve.bad host", "must be host or host:port",
                 id="space-in-host"),
    pytest.param("a.example.com: 1.2.3.4", "resolve.a.example.com", "must map to address:port",
                 id="no-port"),
    pytest.param("a.example.com: 5", "resolve.a.example.com", "must map to address:port",
                 id="not-a-string"),
    pytest.param("a.example.com: 1.2.3.4:70000", "resolve.a.example.com",
                 "must map to address:port", id="port-out-of-range"),
    pytest.param("'a.example.com:99999': 1.2.3.4:1", "resolve.a.example.com:99999",
                 "must be host or host:port", id="key-port-out-of-range"),
])
def test_bad_resolve_entry_is_located(
    tmp_path: Path, entry: str, key: str, fragment: str
) -> None:
    path = write(tmp_path, f"resolve:\n  ok.example.com: 127.0.0.1:1\n  {entry}\n")
    problem = only_problem(path)
    assert (problem.line, problem.key) == (3, key)
    assert fragment in problem.message


def test_resolve_that_is_not_a_mapping_is_located(tmp_path: Path) -> None:
    problem = only_problem(write(tmp_path, "mode: enforce\nresolve: [a]\n"))
    assert (problem.line, problem.key) == (2, "resolve")


# --------------------------------------------------------------------------- unreadable files


@pytest.mark.parametrize(("text", "line"), [
    pytest.param("mode: enforce\napps:\n  - appid: [unclosed\nlimits: {}\n", 4,
                 id="unclosed-flow"),
    pytest.param("mode: enforce\n\tscope: all\n", 2, id="tab-indent"),
    pytest.param("mode: enforce\nscope: all\nmode: report\n", 3, id="duplicate-key"),
    pytest.param("mode: enforce\n  scope: all\n", 2, id="bad-indent"),
])
def test_invalid_yaml_is_unreadable_with_a_line(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        check_config(path)
    assert info.value.unreadable is True
    [problem] = info.value.problems
    assert (problem.file, problem.line, problem.key) == (str(path), line, "(yaml)")
    assert "is not valid YAML" in problem.message
    with pytest.raises(ConfigError) as again:
        load_config(path)
    assert again.value.unreadable is True


def test_missing_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.unreadable is True
    [problem] = info.value.problems
    assert (problem.file, problem.line) == (str(path), None)
    assert "does not exist" in problem.message


def test_non_utf8_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"mode: \xe9nforce\n")
    with pytest.raises(ConfigError) as info:
        check_config(path)
    assert info.value.unreadable is True


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfmode: report\n")
    assert load_config(path).mode == "report"


# --------------------------------------------------------------------------- Problem, ConfigError


@pytest.mark.parametrize(("problem", "text"), [
    pytest.param(Problem("w.yaml", 12, "limits.concurency", "unknown key 'concurency'"),
                 "w.yaml:12: limits.concurency: unknown key 'concurency'", id="no-rule"),
    pytest.param(Problem("w.yaml", 7, "apps[0].domains.request", "'https://1.2.3.4' is an IP",
                         "config.ip_address"),
                 "w.yaml:7: apps[0].domains.request: 'https://1.2.3.4' is an IP "
                 "[config.ip_address]", id="with-rule"),
    pytest.param(Problem("w.yaml", None, "(file)", "does not exist"),
                 "w.yaml: (file): does not exist", id="no-line"),
    pytest.param(Problem("p.json", 3, "miniprogramRoot", "'dist/' is not a folder",
                         severity="warning"),
                 "p.json:3: warning: miniprogramRoot: 'dist/' is not a folder", id="warning"),
])
def test_problem_str_is_one_line_naming_file_line_and_key(problem: Problem, text: str) -> None:
    assert str(problem) == text
    assert "\n" not in str(problem)


def test_every_problem_of_a_real_config_prints_as_one_located_line(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        mode: enforcing
        apps:
          - appid: {APPID}
            domains:
              request: [http://a.example.com]
        limits:
          sockets: "x"
    """)
    for problem in problems_of(path):
        text = str(problem)
        assert "\n" not in text
        assert text.startswith(f"{path}:{problem.line}: {problem.key}: ")


def test_load_config_raises_config_error_listing_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        mode: enforcing
        apps:
          - appid: {APPID}
            domains:
              request: [http://a.example.com, https://localhost]
        limits:
          concurency: 3
    """)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    error = info.value
    assert error.unreadable is False
    assert {(p.key, p.rule) for p in error.problems} == {
        ("mode", None),
        ("apps[0].domains.request", "config.scheme"),
        ("apps[0].domains.request", "config.localhost"),
        ("limits.concurency", None),
    }
    assert error.problems == problems_of(path)
    for problem in error.problems:
        assert str(problem) in str(error)


# --------------------------------------------------------------------------- business_domains


def test_business_domains_parse_to_entries(tmp_path: Path) -> None:
    path = write(tmp_path, app_yaml("request: [https://api.example.com]",
                                    "business_domains: [https://h5.example.org, "
                                    "'HTTPS://Shop.Example.com/', https://h5.example.org]"))
    config, problems = check_config(path)
    assert problems == []
    assert [(e.scheme, e.host, e.port) for e in config.apps[0].business_domains] == [
        ("https", "h5.example.org", None), ("https", "shop.example.com", None)]


def test_business_domains_default_to_none(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, app_yaml("request: [https://api.example.com]")))
    assert config.apps[0].business_domains == ()


@pytest.mark.parametrize(("entry", "rule", "fragment"), [
    pytest.param("http://h5.example.org", "config.scheme", "https://", id="http"),
    pytest.param("wss://h5.example.org", "config.scheme", "https://", id="wss"),
    pytest.param("https://10.0.0.1", "config.ip_address", "IP address", id="ip"),
    pytest.param("https://[::1]", "config.ip_address", "IP address", id="ipv6"),
    pytest.param("https://localhost", "config.localhost", "localhost", id="localhost"),
    pytest.param("https://api.weixin.qq.com", "config.forbidden", "business domain",
                 id="forbidden"),
    pytest.param("https://h5.example.org:8443", "config.invalid", "port", id="port"),
    pytest.param("https://h5.example.org:443", "config.invalid", "port", id="port-443"),
    pytest.param("https://h5.example.org/activity", "config.invalid", "path", id="path"),
    pytest.param("https://*.example.org", "config.invalid", "wildcard", id="wildcard"),
    pytest.param("h5.example.org", "config.invalid", "scheme://", id="no-scheme"),
])
def test_business_domain_the_console_refuses_is_a_located_config_rule(
        tmp_path: Path, entry: str, rule: str, fragment: str) -> None:
    path = write(tmp_path, app_yaml("request: [https://api.example.com]",
                                    f"business_domains:\n  - https://ok.example.org\n"
                                    f"  - '{entry}'\n"))
    problem = only_problem(path)
    assert (problem.line, problem.key, problem.rule) == (
        line_of(path, f"'{entry}'"), "apps[0].business_domains", rule)
    assert entry in problem.message and fragment in problem.message
    config, _ = check_config(path)
    assert [e.host for e in config.apps[0].business_domains] == ["ok.example.org"]


def test_more_than_200_business_domains_is_too_many(tmp_path: Path) -> None:
    items = "".join(f"  - https://h{i}.example.org\n" for i in range(201))
    path = write(tmp_path, app_yaml("request: [https://api.example.com]",
                                    f"business_domains:\n{items}"))
    problem = only_problem(path)
    assert (problem.key, problem.rule, problem.line) == (
        "apps[0].business_domains", "config.too_many_domains",
        line_of(path, "business_domains:"))
    assert "201" in problem.message and "200" in problem.message


def test_business_domains_do_not_count_toward_max_domains(tmp_path: Path) -> None:
    items = "".join(f"  - https://h{i}.example.org\n" for i in range(25))
    path = write(tmp_path, app_yaml("request: [https://api.example.com]",
                                    f"business_domains:\n{items}"))
    assert problems_of(path) == []


@pytest.mark.parametrize(("text", "fragment"), [
    pytest.param("business_domains: https://h5.example.org", "must be a list", id="string"),
    pytest.param("business_domains: [42]", "must be a string", id="number"),
])
def test_business_domains_of_the_wrong_shape_are_located(
        tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, app_yaml("request: [https://api.example.com]", text))
    problem = only_problem(path)
    assert problem.key.startswith("apps[0].business_domains")
    assert fragment in problem.message
    assert problem.line == line_of(path, "business_domains")


@pytest.mark.parametrize(("raw", "verdict"), [
    pytest.param("https://h5.example.org", None, id="ok"),
    pytest.param("https://h5.example.org/", None, id="trailing-slash"),
    pytest.param("https://h5.example.org:8080", "config.invalid", id="port"),
    pytest.param("http://h5.example.org", "config.scheme", id="http"),
])
def test_judge_business_domain(raw: str, verdict: str | None) -> None:
    result = judge_business_domain(raw)
    assert (result[0] if result else None) == verdict


def test_resolve_target_takes_host_port_before_host_and_normalises_the_name():
    config = Config(resolve={("api.example.com", 8443): ("127.0.0.1", 1),
                             ("api.example.com", None): ("127.0.0.1", 2)})
    assert config.resolve_target("API.Example.com", 8443) == ("127.0.0.1", 1)
    assert config.resolve_target("api.example.com", 443) == ("127.0.0.1", 2)
    assert config.resolve_target("other.example.com", 443) is None
