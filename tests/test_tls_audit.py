"""TlsAudit in-process: one judgement per chain, the per-platform verdict per flow, the
handshake decision that stands in for OpenSSL's, failures classified from the chain or
the message, the offline audit left off the network, and fail-closed hooks."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from mitmproxy import certs, connection, tls
from mitmproxy.flow import Error
from mitmproxy.proxy import context as proxy_context
from mitmproxy.test import taddons, tflow, tutils
from wxgate import events, tls_audit
from wxgate.identify import IdentifyApp
from wxgate.policy.config import Config
from wxgate.tls_audit import (
    META_TLS,
    ConnVerdict,
    TlsAudit,
    _HandshakeCheck,
    accepted_versions,
    accepts_tls12,
    version_refusal,
)
from wxgate.verdict import info_of

from .addon_helpers import REFERER, mp_flow, run_hook, runtime_for
from .e2e.harness import Upstream
from .tls_chains import Pki

IOS_UA = "Mozilla/5.0 (iPhone) MicroMessenger/8.0.50 MiniProgramEnv/iOS"
ANDROID_UA = "Mozilla/5.0 (Linux; Android 14) MicroMessenger/8.0.50 MiniProgramEnv/android"
HOST = "api.example.com"


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "log.jsonl"
    events.configure("off")
    events.SINK.open(path)
    yield path
    events.SINK.close()


@pytest.fixture
def judged(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hosts whose chain TlsAudit actually judged (its cache missed), in order."""
    calls: list[str] = []
    real = tls_audit.audit_chain

    def counting(chain: Any, host: str, *args: Any) -> Any:
        calls.append(host)
        return real(chain, host, *args)

    monkeypatch.setattr(tls_audit, "audit_chain", counting)
    return calls


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class Setup:
    """A TlsAudit (and the IdentifyApp it reads) with the test root as its only root."""

    def __init__(self, tmp_path: Path, pki: Pki, **config: Any) -> None:
        self.runtime = runtime_for(tmp_path)
        if config:
            self.runtime.install(Config(**{**self.runtime.config.__dict__, **config}))
        self.audit = TlsAudit(self.runtime)
        self.audit._roots = list(pki.roots)
        self.identify = IdentifyApp(self.runtime)

    def flow(self, user_agent: str, server: connection.Server | None = None,
             live: bool = True) -> Any:
        flow = mp_flow(f"https://{HOST}/x", User_Agent=user_agent)
        flow.live = live
        self.identify.requestheaders(flow)
        self.audit.requestheaders(flow)
        if server is not None:
            flow.server_conn = server
        return flow


def server_with(chain: list[x509.Certificate], version: str = "TLSv1.3",
                cipher: str = "TLS_AES_128_GCM_SHA256") -> connection.Server:
    server = connection.Server(address=("127.0.0.1", 9443))
    server.sni = HOST
    server.certificate_list = [certs.Cert(c) for c in chain]
    server.tls_version = version  # type: ignore[assignment]
    server.cipher = cipher
    return server


def tls_data(server: connection.Server, client: connection.Client | None = None,
             ssl_conn: Any = None) -> tls.TlsData:
    from mitmproxy import options

    ctx = proxy_context.Context(client or tflow.tclient_conn(), options.Options())
    return tls.TlsData(server, ctx, ssl_conn=ssl_conn)


def test_each_chain_is_judged_once_per_host_port_and_fingerprint(tmp_path: Path, pki: Pki,
                                                                  judged: list[str]):
    s = Setup(tmp_path, pki)
    good = pki.serve(HOST).sent
    other = pki.serve(HOST, "validity_900").sent
    with taddons.context(s.audit):
        for _ in range(3):
            for chain in (good, other):
                s.audit.tls_established_server(tls_data(server_with(chain)))
        assert len(judged) == 2
        # Another port is another server, even with the same chain.
        server = server_with(good)
        server.address = ("127.0.0.1", 9444)
        s.audit.tls_established_server(tls_data(server))
        assert len(judged) == 3


def test_one_connection_verdict_fails_the_iphone_and_warns_the_android_phone(
        tmp_path: Path, pki: Pki, log: Path):
    s = Setup(tmp_path, pki)
    server = server_with(pki.serve(HOST, "validity_900").sent)
    with taddons.context(s.audit, s.identify):
        s.audit.tls_established_server(tls_data(server))
        iphone, android = s.flow(IOS_UA, server), s.flow(ANDROID_UA, server)
        for flow in (iphone, android):
            flow.response = tutils.tresp()
            run_hook(s.audit.responseheaders(flow))
    assert iphone.error is not None and iphone.error.msg == Error.KILLED_MESSAGE
    assert android.error is None
    assert iphone.metadata[META_TLS]["decision"] == "blocked"
    assert android.metadata[META_TLS]["decision"] == "reported"
    assert [(e["platform"], e["rule"], e["severity"], e["action"]) for e in lines(log)] == [
        ("ios", "tls.ats", "error", "blocked"), ("android", "tls.ats", "warning", "reported")]


def test_a_flow_is_judged_once_even_if_its_hooks_fire_again(tmp_path: Path, pki: Pki,
                                                            log: Path):
    s = Setup(tmp_path, pki)
    server = server_with(pki.serve(HOST, "validity_900").sent)
    with taddons.context(s.audit, s.identify):
        s.audit.tls_established_server(tls_data(server))
        flow = s.flow(IOS_UA, server)
        flow.response = tutils.tresp()
        run_hook(s.audit.responseheaders(flow))
        # mitmproxy fires `error` for the flow it just killed.
        asyncio.run(s.audit.error(flow))
    assert len(lines(log)) == 1


def test_block_with_response_answers_once_the_body_is_in(tmp_path: Path, pki: Pki, log: Path):
    s = Setup(tmp_path, pki, block_with="response")
    server = server_with(pki.serve(HOST, "validity_900").sent)
    with taddons.context(s.audit, s.identify):
        s.audit.tls_established_server(tls_data(server))
        flow = s.flow(IOS_UA, server)
        flow.response = tutils.tresp()
        run_hook(s.audit.responseheaders(flow))
        # Nothing decided yet on the wire: the real body still has to arrive.
        assert flow.response.status_code == 200 and flow.response.stream is False
        s.audit.response(flow)
    assert flow.response.status_code == 403
    body = json.loads(flow.response.content)
    assert (body["rule"], body["errMsg"]) == ("tls.ats", "request:fail ssl hand shake error")


class FakeSSL:
    """What the verify callback and tls_failed_server read from a pyOpenSSL connection."""

    def __init__(self, chain: list[x509.Certificate], version: str = "TLSv1.3") -> None:
        self.chain, self.version = chain, version

    def get_peer_cert_chain(self, as_cryptography: bool = False) -> list[x509.Certificate]:
        return self.chain

    def get_protocol_version_name(self) -> str:
        return self.version

    def get_cipher_name(self) -> str:
        return "TLS_AES_128_GCM_SHA256"


def test_a_refused_handshake_is_judged_from_the_chain_it_sent(tmp_path: Path, pki: Pki,
                                                              log: Path):
    s = Setup(tmp_path, pki)
    chain = pki.serve(HOST, "leaf_only").sent
    server = server_with([])
    message = "Certificate verify failed: unable to get local issuer certificate"
    server.error = message
    with taddons.context(s.audit, s.identify):
        flow = s.flow(ANDROID_UA)
        flow.request.host, flow.request.port = server.address
        s.audit.tls_failed_server(tls_data(server, flow.client_conn, FakeSSL(chain)))
        flow.error = Error(message)
        asyncio.run(s.audit.error(flow))
    assert flow.error.msg == Error.KILLED_MESSAGE  # no 502: the client sees the failure
    (line,) = lines(log)
    assert (line["rule"], line["action"]) == ("tls.incomplete_chain", "blocked")
    assert "sent only the leaf" in line["detail"]


def test_a_handshake_refused_by_the_rules_is_judged_once(tmp_path: Path, pki: Pki, log: Path,
                                                         judged: list[str]):
    s = Setup(tmp_path, pki)
    server = server_with([])
    server.error = "Certificate verify failed: unspecified certificate verification error"
    conn = FakeSSL(pki.serve(HOST, "validity_900").sent)
    with taddons.context(s.audit, s.identify):
        flow = s.flow(IOS_UA)
        check = _HandshakeCheck(s.audit, server, tls_audit.ClientView(True, "ios"))
        assert check.verify(conn, None, 0, 0, 1) is False  # type: ignore[arg-type]
        s.audit.tls_failed_server(tls_data(server, flow.client_conn, conn))
        flow.request.host, flow.request.port = server.address
        flow.error = Error(server.error)
        asyncio.run(s.audit.error(flow))
    assert len(judged) == 1
    assert [(e["rule"], e["severity"], e["action"]) for e in lines(log)] == [
        ("tls.ats", "error", "blocked")]


VERSION_MISMATCH = ("The remote server and mitmproxy cannot agree on a TLS version to use. "
                    "You may need to adjust mitmproxy's tls_version_server_min option.")


class Versions:
    """Stands in for the per-version probe: what the server accepts, and how often asked."""

    def __init__(self, accepted: tuple[str, ...] | None) -> None:
        self.accepted = accepted
        self.calls: list[tuple[tuple[str, int], str]] = []

    async def __call__(self, address: tuple[str, int], servername: str,
                       timeout: float = 5.0) -> tuple[str, ...] | None:
        self.calls.append((address, servername))
        return self.accepted


def refuse(s: Setup, message: str, user_agent: str = ANDROID_UA, live: bool = True) -> Any:
    """A call whose upstream handshake failed with `message`, no chain sent."""
    server = server_with([])
    server.error = message
    flow = s.flow(user_agent, live=live)
    flow.request.host, flow.request.port = server.address
    s.audit.tls_failed_server(tls_data(server, flow.client_conn, None))
    flow.error = Error(message)
    asyncio.run(s.audit.error(flow))
    return flow


def test_a_failure_without_a_chain_is_classified_from_its_message(
        tmp_path: Path, pki: Pki, log: Path, monkeypatch: pytest.MonkeyPatch):
    """The server can't be probed (it is gone): the message names the rule."""
    monkeypatch.setattr(tls_audit, "accepted_versions", Versions(None))
    s = Setup(tmp_path, pki)
    with taddons.context(s.audit, s.identify):
        refuse(s, VERSION_MISMATCH, IOS_UA)
    (line,) = lines(log)
    assert (line["rule"], line["action"]) == ("tls.version", "blocked")
    assert line["detail"] == f"the upstream TLS handshake failed: {VERSION_MISMATCH}"


@pytest.mark.parametrize("message", [
    VERSION_MISMATCH,
    "OpenSSL Error([('SSL routines', '', 'unsupported protocol')])",
    # Version-intolerant stacks: no protocol_version alert, so the message names no rule.
    "OpenSSL Error([('SSL routines', '', 'tls alert handshake failure')])",
    "connection closed",
], ids=["protocol-version-alert", "tls11-server-hello", "handshake-failure-alert", "closed"])
def test_a_server_that_speaks_only_tls11_is_tls_version_whatever_its_message(
        tmp_path: Path, pki: Pki, log: Path, monkeypatch: pytest.MonkeyPatch, message: str):
    monkeypatch.setattr(tls_audit, "accepted_versions", Versions(("TLSv1", "TLSv1.1")))
    s = Setup(tmp_path, pki)
    with taddons.context(s.audit, s.identify):
        flow = refuse(s, message)
    assert flow.error is not None and flow.error.msg == Error.KILLED_MESSAGE
    (line,) = lines(log)
    assert (line["rule"], line["severity"], line["action"], line["errMsg"]) == (
        "tls.version", "error", "blocked", "request:fail ssl hand shake error")
    assert line["detail"] == ("the server accepts only TLSv1, TLSv1.1, below tls.min_version "
                              f"1.2; the upstream TLS handshake failed: {message}")


def test_a_tls11_only_server_is_logged_under_block_with_response_too(
        tmp_path: Path, pki: Pki, log: Path, monkeypatch: pytest.MonkeyPatch):
    """mitmproxy answers such a call with its 502, which no hook can replace; the log line
    still names the rule."""
    monkeypatch.setattr(tls_audit, "accepted_versions", Versions(("TLSv1.1",)))
    s = Setup(tmp_path, pki, block_with="response")
    with taddons.context(s.audit, s.identify):
        refuse(s, "connection closed")
    assert [(e["rule"], e["action"]) for e in lines(log)] == [("tls.version", "blocked")]


def test_a_handshake_failure_of_a_server_that_speaks_tls12_names_no_rule(
        tmp_path: Path, pki: Pki, log: Path, monkeypatch: pytest.MonkeyPatch):
    """The versions are not what failed, and the message says nothing a rule judges."""
    monkeypatch.setattr(tls_audit, "accepted_versions", Versions(("TLSv1.1", "TLSv1.2")))
    s = Setup(tmp_path, pki)
    with taddons.context(s.audit, s.identify):
        flow = refuse(s, "connection closed")
    assert lines(log) == [] and flow.error is not None
    assert flow.error.msg == "connection closed"


def test_the_versions_are_probed_once_per_host_and_address(
        tmp_path: Path, pki: Pki, log: Path, monkeypatch: pytest.MonkeyPatch):
    versions = Versions(("TLSv1.1",))
    monkeypatch.setattr(tls_audit, "accepted_versions", versions)
    s = Setup(tmp_path, pki)
    with taddons.context(s.audit, s.identify):
        for _ in range(3):
            refuse(s, "connection closed")
    assert versions.calls == [(("127.0.0.1", 9443), HOST)]
    assert [e["rule"] for e in lines(log)] == ["tls.version"] * 3


def test_a_captured_handshake_failure_never_probes_the_network(
        tmp_path: Path, pki: Pki, log: Path, monkeypatch: pytest.MonkeyPatch):
    versions = Versions(("TLSv1.1",))
    monkeypatch.setattr(tls_audit, "accepted_versions", versions)
    s = Setup(tmp_path, pki)
    with taddons.context(s.audit, s.identify):
        refuse(s, VERSION_MISMATCH, live=False)
    assert versions.calls == []
    assert [(e["rule"], e["action"]) for e in lines(log)] == [("tls.version", "reported")]


@pytest.mark.parametrize(("accepted", "min_version", "rule"), [
    (("TLSv1.1",), "1.2", "tls.version"),
    (("TLSv1", "TLSv1.1"), "1.2", "tls.version"),
    (("TLSv1.2",), "1.3", "tls.version"),
    (("TLSv1.1", "TLSv1.2"), "1.2", None),
    (("TLSv1.1",), "1.1", None),
    ((), "1.2", None),
])
def test_version_refusal_names_a_server_whose_every_version_is_too_old(
        accepted: tuple[str, ...], min_version: str, rule: str | None):
    found = version_refusal(accepted, min_version, "connection closed")
    assert (found.rule if found else None) == rule


def test_a_captured_tls_failure_is_reported_offline(tmp_path: Path, pki: Pki, log: Path):
    """The offline audit replays no handshake: the captured error is all there is, and a
    loaded flow is reported, never killed."""
    s = Setup(tmp_path, pki)
    with taddons.context(s.audit, s.identify):
        flow = s.flow(IOS_UA, live=False)
        flow.error = Error("Certificate verify failed: certificate has expired")
        asyncio.run(s.audit.error(flow))
        other = s.flow(IOS_UA, live=False)
        other.error = Error("Connection killed.")
        asyncio.run(s.audit.error(other))
    assert [(e["rule"], e["action"]) for e in lines(log)] == [("tls.expired", "reported")]


def test_the_offline_audit_never_probes_the_network(tmp_path: Path, pki: Pki):
    s = Setup(tmp_path, pki)
    server = server_with(pki.serve(HOST).sent)
    with taddons.context(s.audit):
        # The audit fires this hook with no pyOpenSSL connection behind it.
        s.audit.tls_established_server(tls_data(server))
    assert s.audit._conns[server.id].legacy_probe is None


# (defect, platform, mode, block_with, (errno, depth, ok)) -> the callback accepts
HANDSHAKE_DECISIONS = [
    ("good", "ios", "enforce", "fail", (0, 0, 1), True),
    ("validity_900", "ios", "enforce", "fail", (0, 0, 1), False),
    ("validity_900", "ios", "enforce", "fail", (0, 1, 1), True),
    ("validity_900", "android", "enforce", "fail", (0, 0, 1), True),
    # With block_with: response the handshake goes on and the response is replaced.
    ("validity_900", "ios", "enforce", "response", (0, 0, 1), True),
    # OpenSSL refuses a clientAuth-only leaf (26) for everyone; the rules only for iOS.
    ("client_auth_eku", "android", "enforce", "fail", (26, 0, 0), True),
    ("client_auth_eku", "ios", "enforce", "fail", (26, 0, 0), False),
    ("sha1", "android", "enforce", "fail", (68, 0, 0), True),
    ("rsa1024", "android", "enforce", "fail", (66, 0, 0), True),
    ("expired", "android", "enforce", "fail", (10, 0, 0), False),
    ("expired", "android", "enforce", "response", (10, 0, 0), False),
    # The rules' roots include the system's; OpenSSL may have only the extra CA file.
    ("good", "android", "enforce", "fail", (20, 1, 0), True),
    # Something the rules do not judge (unhandled critical extension): OpenSSL decides.
    ("good", "android", "enforce", "fail", (34, 0, 0), False),
    # DevTools' "do not verify".
    ("expired", "ios", "report", "fail", (10, 0, 0), True),
    ("validity_900", "ios", "report", "fail", (0, 0, 1), True),
]


@pytest.mark.parametrize(("defect", "platform", "mode", "block_with", "call", "accepts"),
                         HANDSHAKE_DECISIONS,
                         ids=[f"{d}-{p}-{m}-{b}-err{c[0]}-depth{c[1]}"
                              for d, p, m, b, c, _ in HANDSHAKE_DECISIONS])
def test_the_handshake_decision_follows_the_phones_rules(
        tmp_path: Path, pki: Pki, defect: str, platform: str, mode: str, block_with: str,
        call: tuple[int, int, int], accepts: bool):
    s = Setup(tmp_path, pki, mode=mode, block_with=block_with)
    server = server_with([])
    check = _HandshakeCheck(s.audit, server, tls_audit.ClientView(True, platform))
    with taddons.context(s.audit):
        conn = FakeSSL(pki.serve(HOST, defect).sent)
        assert check.verify(conn, None, *call) is accepts  # type: ignore[arg-type]


def test_a_failing_handshake_check_fails_closed(tmp_path: Path, pki: Pki, log: Path,
                                                monkeypatch: pytest.MonkeyPatch):
    s = Setup(tmp_path, pki)
    monkeypatch.setattr(tls_audit, "for_platform", _boom)
    check = _HandshakeCheck(s.audit, server_with([]), tls_audit.ClientView(True, "android"))
    with taddons.context(s.audit):
        assert check.verify(FakeSSL(pki.serve(HOST).sent), None, 0, 0, 1) is False  # type: ignore[arg-type]
    assert [e["event"] for e in lines(log)] == ["wxgate_error"]


def _boom(*_: object, **__: object) -> None:
    raise RuntimeError("injected")


@pytest.mark.parametrize("hook", ["responseheaders", "error"])
def test_an_exception_in_an_enforcing_hook_blocks_the_flow(
        tmp_path: Path, pki: Pki, log: Path, monkeypatch: pytest.MonkeyPatch, hook: str):
    s = Setup(tmp_path, pki)
    server = server_with(pki.serve(HOST, "expired").sent)
    with taddons.context(s.audit, s.identify):
        s.audit.tls_established_server(tls_data(server))
        flow = s.flow(ANDROID_UA, server)
        if hook == "error":
            flow.error = Error("Certificate verify failed: certificate has expired")
        else:
            flow.response = tutils.tresp()
        monkeypatch.setattr(tls_audit, "for_platform", _boom)
        run_hook(getattr(s.audit, hook)(flow))
    assert info_of(flow).decision == "blocked"
    assert flow.error is not None and flow.error.msg == Error.KILLED_MESSAGE
    assert [e["event"] for e in lines(log)] == ["wxgate_error"]


def test_a_connection_whose_judging_failed_fails_its_flows_closed(tmp_path: Path, pki: Pki,
                                                                  log: Path):
    s = Setup(tmp_path, pki)
    server = server_with(pki.serve(HOST).sent)
    with taddons.context(s.audit, s.identify):
        s.audit._conns[server.id] = ConnVerdict(HOST, [], error="RuntimeError: injected")
        flow = s.flow(ANDROID_UA, server)
        flow.response = tutils.tresp()
        run_hook(s.audit.responseheaders(flow))
    assert info_of(flow).decision == "blocked"


def test_out_of_scope_calls_are_not_judged(tmp_path: Path, pki: Pki, log: Path):
    s = Setup(tmp_path, pki)
    server = server_with(pki.serve(HOST, "expired").sent)
    with taddons.context(s.audit, s.identify):
        s.audit.tls_established_server(tls_data(server))
        req = tutils.treq()
        req.url = f"https://{HOST}/x"
        req.headers["User-Agent"] = "curl/8"
        flow = tflow.tflow(req=req, resp=True)
        s.identify.requestheaders(flow)
        flow.server_conn = server
        run_hook(s.audit.responseheaders(flow))
    assert flow.error is None and not lines(log)
    assert REFERER  # the in-scope flows above carry the canonical Referer


# --- the TLS 1.2 probe behind tls.no_legacy ----------------------------------------------------

@pytest.fixture(scope="module")
def servers(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Upstream]]:
    directory = tmp_path_factory.mktemp("probe")
    chain = pki.serve(HOST)
    made = {
        "both": Upstream(chain.server_context(directory / "both")),
        "tls13": Upstream(chain.server_context(
            directory / "tls13", versions=(ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3))),
        "tls11": Upstream(chain.server_context(
            directory / "tls11", versions=(ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1))),
    }
    yield made
    for server in made.values():
        server.close()


def test_a_tls13_only_server_warns_every_call_after_one_probe(
        tmp_path: Path, pki: Pki, log: Path, servers: dict[str, Upstream]):
    s = Setup(tmp_path, pki)
    server = server_with(pki.serve(HOST).sent)
    server.address = ("127.0.0.1", servers["tls13"].port)
    before = servers["tls13"].snapshot()[0]

    async def two_calls() -> list[Any]:
        s.audit.tls_established_server(tls_data(server, ssl_conn=FakeSSL([])))
        flows = [s.flow(ANDROID_UA, server), s.flow(IOS_UA, server)]
        for flow in flows:
            flow.response = tutils.tresp()
            waiting = s.audit.responseheaders(flow)
            if waiting is not None:
                await waiting
        return flows

    with taddons.context(s.audit, s.identify):
        flows = asyncio.run(two_calls())
    assert servers["tls13"].snapshot()[0] == before + 1  # one probe, for both calls
    assert all(f.error is None for f in flows)  # a warning never blocks
    assert [(e["platform"], e["rule"], e["severity"]) for e in lines(log)] == [
        ("android", "tls.no_legacy", "warning"), ("ios", "tls.no_legacy", "warning")]


def test_a_probe_that_outlasts_a_call_still_judges_the_later_calls(
        tmp_path: Path, pki: Pki, log: Path, monkeypatch: pytest.MonkeyPatch):
    """The first call stops waiting for the TLS 1.2 probe and passes (unknown); once the
    probe finds a TLS 1.3-only server, the connection's later calls are warned."""
    finish = asyncio.Event()

    async def slow_probe(address: Any, host: str) -> bool:
        await finish.wait()
        return False

    monkeypatch.setattr(tls_audit, "accepts_tls12", slow_probe)
    monkeypatch.setattr(tls_audit, "LEGACY_PROBE_TIMEOUT_S", 0.05)
    s = Setup(tmp_path, pki)
    server = server_with(pki.serve(HOST).sent)
    server.address = ("127.0.0.1", 9)

    async def calls() -> None:
        s.audit.tls_established_server(tls_data(server, ssl_conn=FakeSSL([])))
        for n in range(3):
            if n == 2:
                finish.set()
                await asyncio.sleep(0)
            flow = s.flow(ANDROID_UA, server)
            flow.response = tutils.tresp()
            waiting = s.audit.responseheaders(flow)
            if waiting is not None:
                await waiting

    with taddons.context(s.audit, s.identify):
        asyncio.run(calls())
    assert [e["rule"] for e in lines(log)] == ["tls.no_legacy"]


def test_the_tls12_probe_tells_a_tls13_only_server_apart(servers: dict[str, Upstream]):
    async def probe_all() -> list[bool | None]:
        return [await accepts_tls12(("127.0.0.1", servers["both"].port), HOST),
                await accepts_tls12(("127.0.0.1", servers["tls13"].port), HOST),
                await accepts_tls12(("127.0.0.1", 1), HOST, timeout=2)]

    assert asyncio.run(probe_all()) == [True, False, None]


def test_the_version_probe_finds_what_each_server_speaks(servers: dict[str, Upstream]):
    async def probe_all() -> list[tuple[str, ...] | None]:
        return [await accepted_versions(("127.0.0.1", servers[name].port), HOST)
                for name in ("both", "tls13", "tls11")] + [
            await accepted_versions(("127.0.0.1", 1), HOST, timeout=2)]

    both, tls13, tls11, unreachable = asyncio.run(probe_all())
    assert both is not None and {"TLSv1.2", "TLSv1.3"} <= set(both)
    assert (tls13, tls11, unreachable) == (("TLSv1.3",), ("TLSv1.1",), None)
