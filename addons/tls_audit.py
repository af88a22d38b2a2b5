"""Holds every in-scope call's upstream TLS connection to the phone's certificate rules
(SPEC §6), and fails the call where the phone would.

Each connection is judged once, when its handshake completes or fails; the verdict is
cached per host, port, chain fingerprint, version and cipher, so a keep-alive pool or a
busy host costs one judgement. The per-platform part (tls.ats fails on iOS, warns
elsewhere) is applied per flow, so the same certificate can fail for an iPhone and pass
for an Android phone in one session, each with its own log line.

How a verdict reaches the wire:

- mitmproxy verifies upstream certificates with OpenSSL. For an in-scope client wxgate
  takes that decision over with a verify callback on the upstream handshake (installed
  after mitmproxy's `tlsconfig` built the connection), so that the phone's rules decide:
  an ATS-only defect passes for an Android client (OpenSSL alone refuses a SHA-1,
  RSA-1024 or clientAuth-only leaf for everyone), and an error for this client refuses
  the handshake, so that, as on the phone, no request reaches the server.
- A refused handshake fires `tls_failed_server` and then the flow's `error`: the flow
  gets its rule there and, with `block_with: fail`, is killed, so the client sees the
  connection fail instead of mitmproxy's 502. (With `block_with: response` mitmproxy's
  502 stands: a hook can't answer a flow whose upstream connection failed.)
- What only shows after the handshake (a TLS 1.2 cipher without forward secrecy), a
  chain OpenSSL trusts but the rules refuse under `block_with: response` (so that the
  client gets the explanatory body), and everything under `ssl_insecure`, is blocked
  when the response headers arrive, before the response is delivered.
- `mode: report` is DevTools' "do not verify": every handshake of an in-scope client is
  accepted and the call goes through, logged.

tls.no_legacy needs to know whether the server still accepts TLS 1.2, which a TLS 1.3
connection does not show: one extra TLS 1.2 handshake per host and address, made by the
first in-scope call on such a connection before its response is delivered; live only.

A refused handshake whose message names no rule, or names a version mismatch, may be a
server that speaks only versions below `tls.min_version`: an old stack may answer a TLS
1.2 ClientHello with a bare handshake_failure alert or by closing the connection. The
first such call probes the server once per version, as `wxgate check-cert` does, and gets
`tls.version` when everything it accepts is too old; live only, once per host and
address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import OrderedDict
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from mitmproxy import connection, ctx, http, tls
from OpenSSL import SSL

from . import events
from .policy.hosts import is_ip_literal
from .policy.rules import Violation
from .policy.tls_rules import (
    ChainVerdict,
    audit_chain,
    chain_fingerprint,
    check_legacy,
    classify_handshake_error,
    for_platform,
    parse_version,
    rules_judge,
)
from .state import Runtime
from .tls_probe import PROBE_VERSIONS, CannotConnect, load_roots, peer_chain, probe, system_roots
from .verdict import answered, enforce, fail_closed, info_of, may_block, record

META_TLS = "wxgate_tls"
LEGACY_PROBE_TIMEOUT_S = 5.0
# Bounds for the per-connection tables: entries outlive their connection only this long.
MAX_ENTRIES = 4096

Address = tuple[str, int]


@dataclass(frozen=True)
class ClientView:
    """Who is on a client connection: decides how its next upstream handshake is judged."""

    in_scope: bool
    platform: str | None


@dataclass
class ConnVerdict:
    """One upstream connection's verdict, before the per-platform part."""

    host: str
    violations: list[Violation]
    trusted: bool = False
    fingerprint: str | None = None
    tls_version: str | None = None
    cipher: str | None = None
    # The handshake error, when the handshake failed.
    refused: str | None = None
    # Judging raised: every flow on the connection is failed closed.
    error: str | None = None
    # (name, address) to probe for TLS 1.2 (tls.no_legacy): a live TLS 1.3 connection.
    legacy_probe: tuple[str, Address] | None = None
    # What a call's META_TLS says once the connection passed: every later call on it.
    passed: dict[str, object] | None = None


def crypto_cert(cert: Any) -> x509.Certificate:
    """A mitmproxy `certs.Cert` as a cryptography certificate (11.0 has no to_cryptography)."""
    to_crypto = getattr(cert, "to_cryptography", None)
    if to_crypto is not None:
        result: x509.Certificate = to_crypto()
        return result
    return x509.load_pem_x509_certificate(cert.to_pem())


def negotiated(conn: SSL.Connection) -> tuple[str | None, str | None]:
    """Version and cipher while the handshake runs; the cipher only for TLS 1.3, where it is
    already settled (a TLS 1.2 cipher shows only once the handshake is done)."""
    version = conn.get_protocol_version_name()
    cipher = conn.get_cipher_name() if parse_version(version) == (1, 3) else None
    return version, cipher


async def accepts_tls12(address: Address, servername: str,
                        timeout: float = LEGACY_PROBE_TIMEOUT_S) -> bool | None:
    """One TLS 1.2-only handshake: True accepted, False refused, None unreachable."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ALL:@SECLEVEL=0")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(
            address[0], address[1], ssl=context,
            server_hostname="" if is_ip_literal(servername) else servername), timeout)
    except ssl.SSLError:
        return False
    except (OSError, TimeoutError):
        return None
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return True


async def accepted_versions(address: Address, servername: str,
                            timeout: float = LEGACY_PROBE_TIMEOUT_S) -> tuple[str, ...] | None:
    """The TLS versions the server completes a handshake with, one probe per version in
    parallel, as check-cert makes them; None when it cannot be reached."""

    async def one(version: tuple[str, int]) -> bool | None:
        try:
            found = await asyncio.to_thread(probe, address[0], address[1], servername,
                                            version, timeout)
        except CannotConnect:
            return None
        return found.accepted

    results = await asyncio.gather(*(one(v) for v in PROBE_VERSIONS))
    if all(r is None for r in results):
        return None
    return tuple(name for (name, _), ok in zip(PROBE_VERSIONS, results, strict=True) if ok)


def version_refusal(accepted: Sequence[str], min_version: str,
                    handshake_error: str) -> Violation | None:
    """tls.version for a server all of whose versions are below tls.min_version; None when
    it accepts one at or above it, or none at all (then the version is not what failed)."""
    want = parse_version(min_version) or (1, 2)
    versions = [parse_version(v) for v in accepted]
    if not versions or any(v is None or v >= want for v in versions):
        return None
    return Violation("tls.version", (
        f"the server accepts only {', '.join(accepted)}, below tls.min_version {min_version}; "
        f"the upstream TLS handshake failed: {handshake_error}"))


def _put(table: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > MAX_ENTRIES:
        table.popitem(last=False)


class TlsAudit:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._roots: list[x509.Certificate] | None = None
        self._judged: OrderedDict[tuple[Any, ...], ChainVerdict] = OrderedDict()
        self._conns: OrderedDict[str, ConnVerdict] = OrderedDict()
        self._failed: OrderedDict[tuple[Any, Any], ConnVerdict] = OrderedDict()
        self._clients: OrderedDict[Any, ClientView] = OrderedDict()
        self._legacy: OrderedDict[tuple[str, Address], asyncio.Task[bool | None]] = (
            OrderedDict())
        self._versions: OrderedDict[tuple[str, Address],
                                    asyncio.Task[tuple[str, ...] | None]] = OrderedDict()
        self._pending: dict[str, tuple[ConnVerdict, list[Violation]]] = {}

    # --- judging ------------------------------------------------------------------------------

    def roots(self) -> list[x509.Certificate]:
        """System roots plus mitmproxy's ssl_verify_upstream_trusted_ca/_confdir."""
        if self._roots is None:
            roots = list(system_roots())
            extra: list[Path] = []
            ca_file = getattr(ctx.options, "ssl_verify_upstream_trusted_ca", None)
            ca_dir = getattr(ctx.options, "ssl_verify_upstream_trusted_confdir", None)
            if ca_file:
                extra.append(Path(ca_file))
            if ca_dir and Path(ca_dir).is_dir():
                extra += [p for p in sorted(Path(ca_dir).iterdir()) if p.is_file()]
            try:
                roots += load_roots(extra)
            except OSError as exc:
                events.logger().error("wxgate_error", hook="TlsAudit.roots",
                                      error=f"cannot read upstream trust roots: {exc}")
            self._roots = roots
        return self._roots

    def judge(self, chain: Sequence[x509.Certificate], host: str, port: int,
              tls_version: str | None, cipher: str | None, now: datetime) -> ChainVerdict:
        key = (host.lower(), port, chain_fingerprint(chain), tls_version, cipher)
        verdict = self._judged.get(key)
        if verdict is None:
            verdict = audit_chain(chain, host, tls_version, cipher, self.roots(),
                                  self.runtime.config.tls, now)
        _put(self._judged, key, verdict)
        return verdict

    # --- lifecycle ----------------------------------------------------------------------------

    def configure(self, updated: set[str]) -> None:
        if updated & {"ssl_verify_upstream_trusted_ca", "ssl_verify_upstream_trusted_confdir",
                      "wxgate_config"}:
            # New roots or new tls: rules make every cached verdict stale.
            self._roots = None
            self._judged.clear()
            self._versions.clear()

    def running(self) -> None:
        # Load the trust store now rather than inside the first handshake.
        self.roots()

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # Under connection_strategy=lazy the upstream handshake follows this flow's request
        # hooks: remember who it is for.
        if answered(flow):
            return
        call = info_of(flow).call
        peer = flow.client_conn.peername
        view = self._clients.get(peer)
        if view is not None and (view.in_scope, view.platform) == (call.in_scope, call.platform):
            self._clients.move_to_end(peer)  # a keep-alive connection's next call: as before
            return
        _put(self._clients, peer, ClientView(call.in_scope, call.platform))

    def client_disconnected(self, client: connection.Client) -> None:
        self._clients.pop(client.peername, None)
        for key in [k for k in self._failed if k[0] == client.peername]:
            del self._failed[key]

    # --- the upstream handshake ---------------------------------------------------------------

    def tls_start_server(self, data: tls.TlsData) -> None:
        server = data.conn
        if data.ssl_conn is not None or data.is_dtls or not isinstance(server, connection.Server):
            return
        if getattr(ctx.options, "ssl_insecure", False):
            return  # verification is off; flows are still judged after the handshake
        view = self._clients.get(data.context.client.peername)
        if view is None or not view.in_scope:
            return  # mitmproxy's own verification stands for calls wxgate does not judge
        builder = ctx.master.addons.get("tlsconfig")
        if builder is None:
            return
        # tlsconfig runs after script addons; let it build the connection (SNI, ALPN,
        # ciphers, hostname check) and then put the phone's rules on top.
        builder.tls_start_server(data)
        if data.ssl_conn is None:
            return
        check = _HandshakeCheck(self, server, view)
        data.ssl_conn.set_verify(SSL.VERIFY_PEER, check.verify)

    def tls_established_server(self, data: tls.TlsData) -> None:
        server = data.conn
        if not isinstance(server, connection.Server):
            return
        host = server.sni or (server.address[0] if server.address else "")
        try:
            chain = [crypto_cert(c) for c in server.certificate_list]
            if not chain:
                return
            port = server.address[1] if server.address else 443
            verdict = self.judge(chain, host, port, server.tls_version, server.cipher,
                                 _when(server.timestamp_tls_setup))
            result = ConnVerdict(host, verdict.violations, verdict.trusted,
                                 verdict.fingerprint, server.tls_version, server.cipher)
            # Only a live handshake can be probed: the offline audit replays this hook
            # without one, and must not touch the network.
            if (data.ssl_conn is not None and server.address
                    and parse_version(server.tls_version) == (1, 3)):
                result.legacy_probe = (host, server.address)
        except Exception as exc:  # noqa: BLE001 - recorded, and fails the flows closed
            events.logger().error("wxgate_error", hook="TlsAudit.tls_established_server",
                                  error=f"{type(exc).__name__}: {exc}", host=host)
            result = ConnVerdict(host, [], error=f"{type(exc).__name__}: {exc}")
        _put(self._conns, server.id, result)

    def tls_failed_server(self, data: tls.TlsData) -> None:
        server = data.conn
        if not isinstance(server, connection.Server):
            return
        host = server.sni or (server.address[0] if server.address else "")
        message = str(server.error or "the TLS handshake failed")
        result = ConnVerdict(host, [], refused=message)
        try:
            # The chain arrives before verification, so a refused handshake still has it
            # (none when the versions did not match).
            ssl_conn = data.ssl_conn
            chain = peer_chain(ssl_conn) if ssl_conn is not None else []
            if ssl_conn is not None and chain:
                version, cipher = negotiated(ssl_conn)
                verdict = self.judge(chain, host, server.address[1] if server.address else 443,
                                     version, cipher, datetime.now(UTC))
                result = ConnVerdict(host, verdict.violations, verdict.trusted,
                                     verdict.fingerprint, version, cipher, refused=message)
        except Exception as exc:  # noqa: BLE001 - the message alone still classifies it
            events.logger().error("wxgate_error", hook="TlsAudit.tls_failed_server",
                                  error=f"{type(exc).__name__}: {exc}", host=host)
        _put(self._failed, (data.context.client.peername, server.address), result)

    def _legacy_probe(self, host: str, address: Address) -> asyncio.Task[bool | None]:
        key = (host, address)
        task = self._legacy.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(accepts_tls12(address, host))
            _put(self._legacy, key, task)
        return task

    async def _version_refusal(self, host: str, address: Address,
                               refused: str) -> Violation | None:
        """tls.version when the server accepts only versions below tls.min_version; the
        versions are probed once per host and address (a server that could not be
        reached is tried again by the next call)."""
        key = (host, address)
        task = self._versions.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(accepted_versions(address, host))
            _put(self._versions, key, task)
        accepted = await asyncio.shield(task)
        if accepted is None:
            self._versions.pop(key, None)
            return None
        return version_refusal(accepted, self.runtime.config.tls.min_version, refused)

    # --- the flows ----------------------------------------------------------------------------

    @fail_closed
    def responseheaders(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        """Applies the connection's verdict to the call; a legacy-TLS probe still running
        comes back as what to await (every later call on the connection finds it done)."""
        info = info_of(flow)
        if not info.call.in_scope or info.decision == "blocked" or META_TLS in flow.metadata:
            return None
        verdict = self._conns.get(flow.server_conn.id)
        if verdict is None:
            return None
        if verdict.passed is not None:
            flow.metadata[META_TLS] = {**verdict.passed, "rules": []}
            return None
        if verdict.error:
            raise RuntimeError(f"judging the upstream TLS failed: {verdict.error}")
        if verdict.legacy_probe is not None and flow.live:
            # Started by the first call that needs it and awaited by it, so the probe's
            # connection never lands on the server while nothing waits for it.
            probe = self._legacy_probe(*verdict.legacy_probe)
            if not probe.done():
                return self._after_probe(flow, verdict, probe)
            self._judge(flow, verdict, probe.result())
        else:
            self._judge(flow, verdict, None)
        return None

    async def _after_probe(self, flow: http.HTTPFlow, verdict: ConnVerdict,
                           probe: asyncio.Future[bool | None]) -> None:
        try:
            accepts = await asyncio.wait_for(asyncio.shield(probe), LEGACY_PROBE_TIMEOUT_S)
        except TimeoutError:
            accepts = None
        self._judge(flow, verdict, accepts)

    def _judge(self, flow: http.HTTPFlow, verdict: ConnVerdict, accepts: bool | None) -> None:
        """`accepts`: whether the server also accepts a legacy TLS handshake (None: unknown)."""
        if not verdict.violations and accepts is not False:
            # A connection that passed (every call on a keep-alive connection to a good
            # server): nothing to log or block, only the record. It is the same for every
            # later call once nothing is left to learn: no probe, or one that answered.
            self._apply(flow, verdict, [], refused=False)
            if verdict.legacy_probe is None or accepts is True:
                verdict.passed = flow.metadata[META_TLS]
            return
        violations = list(verdict.violations)
        if accepts is False:
            violations.append(check_legacy(False, True).violation())
        violations = self._for_flow(flow, violations)
        blocks = any(v.fails_call for v in violations) and may_block(flow, self.runtime)
        if blocks and self.runtime.config.block_with == "response" and flow.response:
            # The explanatory response replaces the real one once its body is in; it
            # must not be streamed to the client before that.
            flow.response.stream = False
            self._pending[flow.id] = (verdict, violations)
            return
        self._apply(flow, verdict, violations, refused=False)

    @fail_closed
    def response(self, flow: http.HTTPFlow) -> None:
        pending = self._pending.pop(flow.id, None)
        if pending is not None:
            self._apply(flow, *pending, refused=False)

    @fail_closed
    async def error(self, flow: http.HTTPFlow) -> None:
        self._pending.pop(flow.id, None)
        info = info_of(flow)
        if (not info.call.in_scope or META_TLS in flow.metadata or flow.error is None
                or flow.response is not None):
            return
        message = flow.error.msg
        address = (flow.request.host, flow.request.port)
        verdict = self._failed.get((flow.client_conn.peername, address))
        handshake_seen = (verdict is not None and bool(verdict.refused)
                          and str(verdict.refused) in message)
        if verdict is None or not handshake_seen:
            # No handshake seen (an offline capture, a refusal before the hooks): the
            # message is all there is.
            if classify_handshake_error(message) is None:
                return
            verdict = ConnVerdict(flow.request.pretty_host, [], refused=message)
        violations = self._for_flow(flow, verdict.violations)
        if not any(v.fails_call for v in violations):
            # The chain shows nothing that fails this client, yet the handshake failed:
            # say what the handshake said (a version mismatch has no chain at all).
            refused = verdict.refused or message
            rule = classify_handshake_error(refused)
            found: Violation | None = None
            if handshake_seen and flow.live and rule in (None, "tls.version"):
                # Which versions the server does speak tells a too-old server from one
                # that failed for another reason (its message may name neither).
                found = await self._version_refusal(verdict.host, address, refused)
            if found is not None:
                violations += self._for_flow(flow, [found])
            elif rule is not None and rule not in {v.rule for v in violations}:
                violations += self._for_flow(flow, [Violation(
                    rule, f"the upstream TLS handshake failed: {refused}")])
        if violations:
            self._apply(flow, verdict, violations, refused=True)

    def _for_flow(self, flow: http.HTTPFlow, violations: list[Violation]) -> list[Violation]:
        info = info_of(flow)
        return [replace(v, api=info.call.api) for v in for_platform(violations, info.call.platform)]

    def _apply(self, flow: http.HTTPFlow, verdict: ConnVerdict, violations: list[Violation],
               refused: bool) -> None:
        """One log line per violation for this flow; the first one that fails the call
        blocks it."""
        blocked = False
        for violation in violations:
            blocks = violation.fails_call and may_block(flow, self.runtime)
            if blocks and not blocked:
                blocked = True
                if refused:
                    # mitmproxy already failed the call; only how the client sees it is left.
                    record(flow, violation, self.runtime, "blocked")
                    self.runtime.blocked += 1
                    if self.runtime.config.block_with == "fail" and flow.killable:
                        flow.kill()
                else:
                    enforce(flow, violation, self.runtime)
            else:
                record(flow, violation, self.runtime, "blocked" if blocks else "reported")
        flow.metadata[META_TLS] = {
            "host": verdict.host,
            "fingerprint": verdict.fingerprint,
            "tls_version": verdict.tls_version,
            "cipher": verdict.cipher,
            "handshake_error": verdict.refused,
            "rules": [v.rule for v in violations],
            "decision": "blocked" if blocked else ("reported" if violations else "passed"),
        }


class _HandshakeCheck:
    """The verify callback of one upstream handshake: the rules' verdict, not OpenSSL's,
    decides for an in-scope client."""

    def __init__(self, audit: TlsAudit, server: connection.Server, view: ClientView) -> None:
        self.audit = audit
        self.server = server
        self.view = view
        self.verdict: ChainVerdict | None = None

    def verify(self, conn: SSL.Connection, cert: Any, errno: int, depth: int, ok: int) -> bool:
        try:
            return self._verify(conn, errno, depth, bool(ok))
        except Exception as exc:  # noqa: BLE001 - an exception here would be re-raised
            # inside mitmproxy's handshake; fail closed where wxgate enforces instead.
            events.logger().error("wxgate_error", hook="TlsAudit.verify",
                                  error=f"{type(exc).__name__}: {exc}", host=self.server.sni)
            return bool(ok) and self.audit.runtime.mode != "enforce"

    def _verify(self, conn: SSL.Connection, errno: int, depth: int, ok: bool) -> bool:
        if self.verdict is None:
            # The chain is complete from the first call on: OpenSSL keeps what was sent
            # before verifying it. A TLS 1.2 cipher is not known yet; the established
            # hook judges it.
            host = self.server.sni or (self.server.address[0] if self.server.address else "")
            port = self.server.address[1] if self.server.address else 443
            version, cipher = negotiated(conn)
            self.verdict = self.audit.judge(peer_chain(conn), host, port, version, cipher,
                                            datetime.now(UTC))
        runtime = self.audit.runtime
        if runtime.mode != "enforce":
            return True  # DevTools' "do not verify": log, never block
        violations = for_platform(self.verdict.violations, self.view.platform)
        blocking = any(v.fails_call for v in violations)
        if not ok:
            return not blocking and rules_judge(errno)
        # OpenSSL calls for the leaf (depth 0) last. A chain OpenSSL accepts but the rules
        # refuse fails here under block_with: fail; under response the handshake completes
        # and the explanatory response replaces the server's.
        return not (depth == 0 and blocking and runtime.config.block_with == "fail")


def _when(timestamp: float | None) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp else datetime.now(UTC)
