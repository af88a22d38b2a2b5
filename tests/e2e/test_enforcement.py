"""End to end through a real `wxgate run` process: what WeChat blocks is blocked the
way the client fails it, never reaches the upstream, and is logged once with every
SPEC §5 field; `mode: report` lets the same calls through and logs them."""

from __future__ import annotations

import http.client
import json
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mitmproxy.io import FlowReader
from wxgate.cli import SCRIPT

from .harness import (
    APPID,
    MP_HEADERS,
    Certs,
    Proxy,
    Upstream,
    base_config,
    iter_fields,
    send,
    start_proxy,
)

pytestmark = pytest.mark.e2e

# (rule, url template, extra headers); {port} is the upstream's real port.
VIOLATIONS = [
    ("scheme.insecure", "http://api.example.com/case-scheme", {}),
    ("domain.not_listed", "https://evil.example.net/case-unlisted", {}),
    ("domain.ip_address", "https://127.0.0.1:{port}/case-ip", {}),
    ("domain.localhost", "https://localhost:{port}/case-localhost", {}),
    ("domain.port_mismatch", "https://api.example.com:9443/case-port", {}),
    ("domain.port_mismatch", "https://api.example.com/case-explicit-443",
     {"Host": "api.example.com:443"}),
    ("domain.forbidden", "https://api.weixin.qq.com/cgi-bin/token", {}),
]
IDS = [f"{rule}:{url.split('/')[-1]}" for rule, url, _ in VIOLATIONS]


def _proxy(session_dir: Path, name: str, certs: Certs, resolve: dict[str, str],
           extra: list[str] | None = None, **overrides: object) -> Iterator[Proxy]:
    proxy = start_proxy(session_dir / name, base_config(resolve, **overrides), certs.ca_file,
                        extra)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def enforcing(session_dir: Path, certs: Certs, resolve_map: dict[str, str]) -> Iterator[Proxy]:
    yield from _proxy(session_dir, "enforce", certs, resolve_map)


@pytest.fixture(scope="module")
def reporting(session_dir: Path, certs: Certs, resolve_map: dict[str, str]) -> Iterator[Proxy]:
    # The mode override is what Docker's WXGATE_MODE sets.
    yield from _proxy(session_dir, "report", certs, resolve_map, ["--set", "wxgate_mode=report"])


@pytest.fixture(scope="module")
def answering(session_dir: Path, certs: Certs, resolve_map: dict[str, str]) -> Iterator[Proxy]:
    yield from _proxy(session_dir, "response", certs, resolve_map, block_with="response")


def _lines_for(proxy: Proxy, path: str) -> list[dict[str, object]]:
    return proxy.wait_for_log(
        lambda e: e.get("event") == "violation" and str(e.get("url", "")).endswith(path))


def test_resolve_keeps_sni_and_reuses_one_upstream_connection(
    enforcing: Proxy, upstream: Upstream, certs: Certs,
):
    """Ten keep-alive calls on one client connection, to a name that `resolve` points at
    127.0.0.1: the upstream sees the name as SNI and one connection, not ten."""
    ctx = ssl.create_default_context(cafile=str(enforcing.ca_file))
    conn = http.client.HTTPSConnection("127.0.0.1", enforcing.port, timeout=10, context=ctx)
    conn.set_tunnel("api.example.com", 443)
    # A first call of the session also makes TlsAudit's one TLS 1.2 probe of the host.
    assert send(enforcing, "https://api.example.com/keepalive-warmup", MP_HEADERS).status == 200
    before = upstream.snapshot()[0]
    sni_before = len(certs.sni_seen)
    for i in range(10):
        conn.request("GET", f"/keepalive/{i}", headers=MP_HEADERS)
        response = conn.getresponse()
        assert response.status == 200 and response.read() == f"hello from upstream " \
            f"/keepalive/{i}".encode()
    conn.close()
    assert upstream.snapshot()[0] - before == 1
    assert certs.sni_seen[sni_before:] == ["api.example.com"]


def test_allowed_request_reaches_upstream_with_its_body(enforcing: Proxy, upstream: Upstream):
    before = upstream.snapshot()
    reply = send(enforcing, "https://api.example.com/hello", MP_HEADERS)
    assert reply.status == 200, reply.error
    assert reply.body == b"hello from upstream /hello"
    assert upstream.snapshot()[1] == before[1] + 1
    # The upstream saw the name the client asked for, not the resolve target.
    assert upstream.requests[-1]["headers"]["Host"] == "api.example.com"
    assert enforcing.violations() == [] or all(
        not str(v["url"]).endswith("/hello") for v in enforcing.violations())


@pytest.mark.parametrize(("rule", "url", "headers"), VIOLATIONS, ids=IDS)
def test_violation_is_blocked_before_the_upstream_and_logged_once(
    enforcing: Proxy, upstream: Upstream, plain_upstream: Upstream,
    rule: str, url: str, headers: dict[str, str],
):
    url = url.format(port=upstream.port)
    before = (upstream.snapshot(), plain_upstream.snapshot())
    reply = send(enforcing, url, {**MP_HEADERS, **headers})
    assert reply.status is None, f"expected a closed connection, got {reply.status}"
    lines = _lines_for(enforcing, url.split("/")[-1])
    assert (upstream.snapshot(), plain_upstream.snapshot()) == before, "upstream was contacted"
    assert [line["rule"] for line in lines] == [rule]
    line = lines[0]
    assert set(iter_fields()) <= set(line)
    assert line["action"] == "blocked" and line["severity"] == "error"
    assert line["appid"] == APPID and line["app_version"] == "0"
    assert line["api"] == "request" and line["method"] == "GET"
    assert line["client"] == "127.0.0.1" and line["platform"] == "android"
    assert line["errMsg"] == "request:fail url not in domain list" and line["errno"] == 600002
    assert line["detail"]


@pytest.mark.parametrize(("rule", "url", "headers"), VIOLATIONS, ids=IDS)
def test_report_mode_forwards_and_logs(
    reporting: Proxy, upstream: Upstream, rule: str, url: str, headers: dict[str, str],
):
    url = url.format(port=upstream.port)
    reply = send(reporting, url, {**MP_HEADERS, **headers})
    assert reply.status == 200, reply.error
    lines = _lines_for(reporting, url.split("/")[-1])
    assert [(line["rule"], line["action"]) for line in lines] == [(rule, "reported")]


def test_block_with_response_answers_403_with_the_clients_errmsg(
    answering: Proxy, upstream: Upstream,
):
    before = upstream.snapshot()
    reply = send(answering, "https://evil.example.net/case-response", MP_HEADERS)
    assert reply.status == 403
    body = json.loads(reply.body)
    assert body["rule"] == "domain.not_listed"
    assert body["errMsg"] == "request:fail url not in domain list"
    assert body["errno"] == 600002
    assert "evil.example.net" in body["detail"]
    assert upstream.snapshot() == before


def test_flow_without_miniprogram_markers_passes_under_scope_miniprogram(
    enforcing: Proxy, upstream: Upstream,
):
    reply = send(enforcing, "https://evil.example.net/case-not-mp",
                 {"User-Agent": "Mozilla/5.0 Safari"})
    assert reply.status == 200, reply.error
    assert _lines_for(enforcing, "case-not-mp") == []


def test_onboarding_host_is_never_blocked(enforcing: Proxy):
    reply = send(enforcing, "http://mitm.it/", MP_HEADERS)
    assert reply.status == 200
    assert _lines_for(enforcing, "mitm.it/") == []


def test_mitmdump_script_entry_enforces_too(
    session_dir: Path, certs: Certs, resolve_map: dict[str, str], upstream: Upstream,
):
    """`mitmdump -s addons/wxgate_addons.py --set wxgate_config=FILE` is the same proxy."""
    workdir = session_dir / "mitmdump"
    workdir.mkdir()
    mitmdump = Path(sys.executable).parent / "mitmdump"
    cfg = workdir / "wxgate.yaml"
    proxy = start_proxy(
        workdir, base_config(resolve_map), certs.ca_file,
        cmd=[str(mitmdump), "-s", str(SCRIPT), "--set", f"wxgate_config={cfg}",
             "-p", "0", "--listen-host", "127.0.0.1"],
    )
    try:
        assert send(proxy, "https://api.example.com/via-mitmdump", MP_HEADERS).status == 200
        before = upstream.snapshot()
        assert send(proxy, "https://evil.example.net/via-mitmdump", MP_HEADERS).status is None
        assert upstream.snapshot() == before
        assert [v["rule"] for v in _lines_for(proxy, "via-mitmdump")] == ["domain.not_listed"]
    finally:
        assert proxy.stop() == 0


def test_sigterm_shuts_down_cleanly_with_the_log_flushed(
    session_dir: Path, certs: Certs, resolve_map: dict[str, str],
):
    proxy = start_proxy(session_dir / "sigterm", base_config(resolve_map), certs.ca_file)
    assert send(proxy, "https://evil.example.net/before-term", MP_HEADERS).status is None
    assert proxy.stop(signal.SIGTERM) == 0
    events = [e["event"] for e in proxy.log()]
    assert "violation" in events and events[-1] == "shutdown"
    # The final summary on exit, for the operator.
    out = "".join(proxy.stdout_lines)
    assert "wxgate summary: flows 1 | blocked 1 | violations: 1 error" in out
    assert "domain.not_listed: 1" in out


def test_run_refuses_a_bad_config_with_exit_2(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("mode: enforce\nlimits:\n  concurency: 10\n")
    done = subprocess.run([sys.executable, "-m", "wxgate.cli", "run", "-c", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{bad}:3: limits.concurency: unknown key" in done.stderr
    assert "Traceback" not in done.stderr


def test_config_file_change_is_loaded_and_a_broken_one_refused(
    session_dir: Path, certs: Certs, resolve_map: dict[str, str], upstream: Upstream,
):
    """Saving the config reloads it; saving one with a problem keeps the running policy
    and logs config_rejected with the located problem."""
    config = base_config(resolve_map)
    proxy = start_proxy(session_dir / "reload", config, certs.ca_file)
    cfg = proxy.workdir / "wxgate.yaml"
    try:
        assert send(proxy, "https://evil.example.net/r1", MP_HEADERS).status is None
        config["apps"][0]["domains"]["request"].append("https://evil.example.net")
        config["log"] = {"path": str(proxy.log_path), "console": "json"}
        cfg.write_text(yaml.safe_dump(config, sort_keys=False))
        deadline = time.monotonic() + 5
        while sum(e.get("event") == "config_loaded" for e in proxy.log()) < 2:
            assert time.monotonic() < deadline, "the saved config was not reloaded"
            time.sleep(0.05)
        assert send(proxy, "https://evil.example.net/r2", MP_HEADERS).status == 200

        cfg.write_text(cfg.read_text() + "limits:\n  concurency: 3\n")
        rejected = proxy.wait_for_log(lambda e: e.get("event") == "config_rejected")
        assert rejected and "unknown key 'concurency'" in rejected[0]["problems"][0]
        # Still the policy loaded last: evil listed, the forbidden host still blocked.
        assert send(proxy, "https://evil.example.net/r3", MP_HEADERS).status == 200
        assert send(proxy, "https://api.weixin.qq.com/r4", MP_HEADERS).status is None
    finally:
        assert proxy.stop() == 0


def test_saved_flows_keep_wxgates_verdict(
    session_dir: Path, certs: Certs, resolve_map: dict[str, str],
):
    """`-w`/mitmweb's save works: the flow file holds each flow's verdict as plain data."""
    workdir = session_dir / "save"
    saved = workdir / "session.mitm"
    proxy = start_proxy(workdir, base_config(resolve_map), certs.ca_file,
                        ["--set", f"save_stream_file={saved}"])
    assert send(proxy, "https://api.example.com/saved-ok", MP_HEADERS).status == 200
    assert send(proxy, "https://evil.example.net/saved-bad", MP_HEADERS).status is None
    assert proxy.stop() == 0
    with saved.open("rb") as fo:
        flows = {f.request.path: f for f in FlowReader(fo).stream()}
    assert flows["/saved-ok"].metadata["wxgate"]["decision"] == "allowed"
    bad = flows["/saved-bad"].metadata["wxgate"]
    assert (bad["decision"], bad["rules"], bad["appid"]) == (
        "blocked", ["domain.not_listed"], APPID)
    assert flows["/saved-ok"].metadata["wxgate_resolved_from"] == ["api.example.com", 443]
