"""The certificate and TLS rules against real local TLS servers, one per defect, through
a real proxy process and through `wxgate check-cert`: each defect yields exactly its
rule, the good chain none; tls.ats fails an iPhone's call and only warns for an Android
phone in the same session; a handshake mitmproxy refuses is classified, not left as a
502; `mode: report` forwards and logs."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wxgate import check_cert, cli
from wxgate.policy.config import TlsRules

from .harness import Proxy, Reply, iter_fields, send
from .tls_harness import CASE_IDS, CASES, HEADERS, Case, Lab, start_lab, start_tls_proxy

pytestmark = pytest.mark.e2e

TLS_FAIL = "request:fail ssl hand shake error"
CASE = {c.name: c for c in CASES}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    servers = start_lab(tmp_path_factory.mktemp("tls-lab"))
    yield servers
    servers.close()


def _proxy(tmp_path_factory: pytest.TempPathFactory, lab: Lab, name: str,
           extra: list[str] | None = None, **overrides: Any) -> Iterator[Proxy]:
    proxy = start_tls_proxy(tmp_path_factory.mktemp(name), lab, extra, **overrides)
    yield proxy
    proxy.stop()
    if proxy.proc.stdout is not None:
        proxy.proc.stdout.close()


@pytest.fixture(scope="module")
def enforcing(tmp_path_factory: pytest.TempPathFactory, lab: Lab) -> Iterator[Proxy]:
    yield from _proxy(tmp_path_factory, lab, "tls-enforce")


@pytest.fixture(scope="module")
def reporting(tmp_path_factory: pytest.TempPathFactory, lab: Lab) -> Iterator[Proxy]:
    yield from _proxy(tmp_path_factory, lab, "tls-report", ["--set", "wxgate_mode=report"])


@pytest.fixture(scope="module")
def answering(tmp_path_factory: pytest.TempPathFactory, lab: Lab) -> Iterator[Proxy]:
    yield from _proxy(tmp_path_factory, lab, "tls-response", block_with="response")


def call(proxy: Proxy, case: Case, platform: str, tag: str = ""
         ) -> tuple[Reply, list[dict[str, Any]]]:
    """One call from the given phone; its reply and the violation lines of that flow."""
    path = f"/{case.name}/{platform}{tag}"
    reply = send(proxy, f"https://{case.host}{path}", HEADERS[platform])
    # Lines are written before the flow is answered or killed; the wait is a tolerance,
    # and pointless where no line is due.
    lines = proxy.wait_for_log(lambda e: e.get("event") == "violation"
                               and str(e.get("url", "")).endswith(path),
                               timeout=2.0 if case.rule else 0.0)
    return reply, lines


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_each_defect_through_the_proxy_yields_exactly_its_rule(
        enforcing: Proxy, lab: Lab, case: Case):
    upstream = lab.servers[case.name]
    before = upstream.snapshot()[1]
    replies = {p: call(enforcing, case, p) for p in ("ios", "android")}

    for platform, (reply, lines) in replies.items():
        assert [e["rule"] for e in lines] == ([case.rule] if case.rule else []), lines
        fails = case.blocks_everyone or (case.rule == "tls.ats" and platform == "ios")
        if fails:
            # The phone's fail callback: the connection closes, no 502 from the proxy.
            assert reply.status is None, reply
            assert lines[0]["action"] == "blocked" and lines[0]["severity"] == "error"
            assert lines[0]["errMsg"] == TLS_FAIL
        else:
            assert reply.status == 200, reply.error
            assert all(e["action"] == "reported" and e["severity"] == "warning"
                       for e in lines)
        assert all(e["platform"] == platform for e in lines)
        if case.ats_rule:
            assert lines[0]["ats_rule"] == case.ats_rule
            assert lines[0]["detail"].startswith(f"ATS {case.ats_rule}: ")

    reached = upstream.snapshot()[1] - before
    if case.blocks_everyone:
        # Refused in the handshake, as the phone refuses it: no request reaches the server.
        assert reached == 0
    elif case.rule == "tls.ats" and case.name != "no_fs":
        assert reached == 1  # Android's only
    elif case.name == "no_fs":
        # The cipher is known only once the handshake is done: the iPhone's call is
        # stopped before its response is delivered, not before its request is sent.
        assert reached == 2


def test_the_same_certificate_fails_on_an_iphone_and_passes_on_android_in_one_session(
        enforcing: Proxy):
    case = CASE["validity_900"]
    ios, ios_lines = call(enforcing, case, "ios", "-session")
    android, android_lines = call(enforcing, case, "android", "-session")

    assert ios.status is None and android.status == 200
    (ios_line,), (android_line,) = ios_lines, android_lines
    for line in (ios_line, android_line):
        assert set(iter_fields()) <= set(line)
        assert line["rule"] == "tls.ats" and line["ats_rule"] == "validity"
        assert "900 days" in line["detail"]
    assert (ios_line["platform"], ios_line["severity"], ios_line["action"]) == (
        "ios", "error", "blocked")
    assert ios_line["errMsg"] == TLS_FAIL
    assert (android_line["platform"], android_line["severity"], android_line["action"]) == (
        "android", "warning", "reported")


TLS11_SERVERS = ["tls11", "tls11_intolerant"]


@pytest.mark.parametrize("block_with", ["fail", "response"])
@pytest.mark.parametrize("name", TLS11_SERVERS)
def test_a_tls11_only_server_is_tls_version_with_its_errmsg_under_both_block_with(
        request: pytest.FixtureRequest, name: str, block_with: str):
    """mitmproxy's own version floor refuses a TLS 1.1 server before any certificate is
    seen; whether the server says so (a protocol_version alert) or not (a bare
    handshake_failure alert), a probe per version names the rule. Under block_with: fail
    the phone's fail callback; under response mitmproxy's 502 stands (no hook can answer
    a flow whose upstream connection failed), and the log line is the same."""
    proxy: Proxy = request.getfixturevalue("enforcing" if block_with == "fail" else "answering")
    reply, lines = call(proxy, CASE[name], "android", f"-{block_with}")
    if block_with == "fail":
        assert reply.status is None, "the client got mitmproxy's 502 instead of the fail callback"
    else:
        assert reply.status == 502
    (line,) = lines
    assert (line["rule"], line["severity"], line["action"], line["errMsg"]) == (
        "tls.version", "error", "blocked", TLS_FAIL)
    assert line["detail"].startswith(
        "the server accepts only TLSv1.1, below tls.min_version 1.2; the upstream TLS "
        "handshake failed: ")


def test_a_call_wxgate_does_not_judge_keeps_mitmproxys_own_verification(
        enforcing: Proxy, lab: Lab):
    """Out of scope (no mini-program marker): no rule applies, and the expired certificate
    is still refused by mitmproxy, not waved through."""
    case = CASE["expired"]
    reply = send(enforcing, f"https://{case.host}/browser", {"User-Agent": "curl/8"})
    assert reply.status == 502
    assert not enforcing.wait_for_log(lambda e: e.get("event") == "violation"
                                      and str(e.get("url", "")).endswith("/browser"),
                                      timeout=0.0)


def test_report_mode_forwards_what_enforce_blocks_and_logs_it(reporting: Proxy, lab: Lab):
    expired, expired_lines = call(reporting, CASE["expired"], "ios", "-report")
    ats, ats_lines = call(reporting, CASE["validity_900"], "ios", "-report")
    assert expired.status == 200 and ats.status == 200
    assert [(e["rule"], e["action"]) for e in expired_lines] == [("tls.expired", "reported")]
    assert [(e["rule"], e["severity"], e["action"]) for e in ats_lines] == [
        ("tls.ats", "error", "reported")]


def test_block_with_response_explains_a_rule_the_handshake_passes(answering: Proxy):
    reply, lines = call(answering, CASE["validity_900"], "ios", "-response")
    assert reply.status == 403
    body = json.loads(reply.body)
    assert body["rule"] == "tls.ats" and body["errMsg"] == TLS_FAIL
    assert "900 days" in body["detail"]
    assert reply.headers["x-wxgate-rule"] == "tls.ats"
    assert [(e["rule"], e["action"]) for e in lines] == [("tls.ats", "blocked")]


def test_block_with_response_after_a_refused_handshake_is_mitmproxys_502(answering: Proxy):
    """A hook can't answer a flow whose upstream connection failed: the client gets
    mitmproxy's 502 naming OpenSSL's reason, and the log line names the rule."""
    reply, lines = call(answering, CASE["expired"], "android", "-response")
    assert reply.status == 502
    assert b"certificate has expired" in reply.body
    assert [(e["rule"], e["action"]) for e in lines] == [("tls.expired", "blocked")]


# --- wxgate check-cert -------------------------------------------------------------------------

def check_cert_json(lab: Lab, case: Case, capsys: pytest.CaptureFixture[str]
                    ) -> tuple[int, dict[str, Any]]:
    code = cli.main(["check-cert", f"127.0.0.1:{lab.port(case)}", "--servername", case.host,
                            "--cafile", str(lab.root_file), "--json", "--timeout", "5"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_check_cert_yields_exactly_the_rule_of_each_defect(
        lab: Lab, case: Case, capsys: pytest.CaptureFixture[str]):
    code, report = check_cert_json(lab, case, capsys)
    assert report["failed"] == ([case.rule] if case.rule else [])
    assert code == (1 if case.rule else 0)
    failed = [c for c in report["checks"] if c["result"] == "fail"]
    if case.ats_rule:
        assert [c["check"] for c in failed] == [f"ats.{case.ats_rule}"]
    assert len(report["chain"]) >= 1
    accepted = [p["version"] for p in report["probes"] if p["accepted"]]
    if case.name in TLS11_SERVERS:
        assert accepted == ["TLSv1.1"]
    elif case.name == "tls13_only":
        assert accepted == ["TLSv1.3"]


def test_check_cert_prints_a_table_and_the_chain_as_sent(lab: Lab):
    case = CASE["leaf_only"]
    done = subprocess.run(
        [sys.executable, "-m", "wxgate.cli", "check-cert", f"127.0.0.1:{lab.port(case)}",
         "--servername", case.host, "--cafile", str(lab.root_file)],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("tls.")]
    assert len(rows) == 16  # 9 rules + 7 ATS rules, one row each
    assert any(r.startswith("tls.incomplete_chain") and " FAIL " in r for r in rows)
    assert "Chain as sent (1 certificate, leaf first):" in done.stdout
    assert done.stdout.rstrip().endswith("FAIL: 1 check failed (tls.incomplete_chain).")


@pytest.mark.parametrize("args", [
    ["127.0.0.1:1"],
    ["not a host"],
    ["127.0.0.1:70000"],
    ["127.0.0.1:443", "--cafile", "/nonexistent/ca.pem"],
], ids=["refused-port", "bad-target", "bad-port", "missing-cafile"])
def test_check_cert_that_cannot_run_says_so_in_one_sentence(args: list[str], tmp_path: Path):
    done = subprocess.run([sys.executable, "-m", "wxgate.cli", "check-cert", *args,
                           "--timeout", "5"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("wxgate check-cert: ") and line.endswith(".")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("text", "expected"), [
    ("api.example.com", ("api.example.com", 443)),
    ("api.example.com:8443", ("api.example.com", 8443)),
    ("127.0.0.1:9443", ("127.0.0.1", 9443)),
    ("[::1]:8443", ("::1", 8443)),
    ("[::1]", ("::1", 443)),
    ("::1", ("::1", 443)),
])
def test_check_cert_reads_host_and_port(text: str, expected: tuple[str, int]):
    assert check_cert.parse_target(text) == expected


def test_check_cert_gives_up_on_a_server_that_never_answers_tls():
    """A listener that accepts and stays silent: two probe timeouts, then exit 2."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        with pytest.raises(check_cert.CannotConnect, match="answered no TLS handshake"):
            check_cert.check_server("127.0.0.1", port, None, [], TlsRules(),
                                    timeout=0.5)
