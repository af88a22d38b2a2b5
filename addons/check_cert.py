"""`wxgate check-cert HOST[:PORT]`: connect the way a phone does and judge every
certificate and TLS rule of SPEC §6, rule by rule, with the chain exactly as sent.

One handshake per TLS version (1.0 to 1.3) shows which versions the server accepts;
the highest one is what a phone negotiates, and its chain and cipher are judged by
`policy.tls_rules`, the same code the live proxy uses. pyOpenSSL (a mitmproxy
dependency) does the handshakes: Python's own ssl module returns the chain as sent only
from 3.13 on, and one library for every Python keeps the probes alike.

Exit codes: 0 every rule passes, 1 any rule fails, 2 the server can't be reached (or
the arguments can't be used), each with one plain sentence.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import select
import socket
import ssl
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL

from .policy.config import ConfigError, TlsRules, load_config
from .policy.hosts import is_ip_literal
from .policy.rules import RULES
from .policy.tls_rules import (
    Check,
    audit_chain,
    check_legacy,
    describe,
    key_description,
    names_of,
)

# (name as OpenSSL reports it, pyOpenSSL constant), lowest first.
PROBE_VERSIONS: tuple[tuple[str, int], ...] = (
    ("TLSv1", SSL.TLS1_VERSION),
    ("TLSv1.1", SSL.TLS1_1_VERSION),
    ("TLSv1.2", SSL.TLS1_2_VERSION),
    ("TLSv1.3", SSL.TLS1_3_VERSION),
)
# SECLEVEL=0: the probe must reach servers that a phone would refuse, to say why.
PROBE_CIPHERS = b"ALL:@SECLEVEL=0"
_PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


class CannotConnect(Exception):
    """The server can't be reached at all; the message is one sentence."""


# --- trust roots -------------------------------------------------------------------------------

def parse_pem_bundle(data: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle; one that does not parse is skipped, as OpenSSL
    skips it, rather than losing the whole store."""
    certs = []
    with warnings.catch_warnings():
        # Some OS bundles still carry roots with a non-positive serial: usable, but
        # cryptography warns about each one on every start.
        warnings.simplefilter("ignore")
        for block in _PEM_RE.findall(data):
            try:
                certs.append(x509.load_pem_x509_certificate(block))
            except ValueError:
                continue
    return certs


def load_roots(paths: Iterable[str | Path]) -> list[x509.Certificate]:
    roots: list[x509.Certificate] = []
    seen: set[bytes] = set()
    for path in paths:
        for cert in parse_pem_bundle(Path(path).read_bytes()):
            fp = cert.fingerprint(hashes.SHA256())
            if fp not in seen:
                seen.add(fp)
                roots.append(cert)
    return roots


@lru_cache(maxsize=1)
def system_roots() -> tuple[x509.Certificate, ...]:
    """The OS bundle plus certifi's (mitmproxy's own default upstream store)."""
    paths: list[str] = []
    default = ssl.get_default_verify_paths().cafile
    if default and Path(default).is_file():
        paths.append(default)
    try:
        import certifi

        paths.append(certifi.where())
    except ImportError:  # pragma: no cover - certifi comes with mitmproxy
        pass
    readable = [p for p in paths if Path(p).is_file()]
    return tuple(load_roots(readable))


# --- probing -----------------------------------------------------------------------------------

@dataclass
class Probe:
    version: str
    accepted: bool
    negotiated: str | None = None
    cipher: str | None = None
    chain: list[x509.Certificate] = field(default_factory=list)
    error: str = ""
    timed_out: bool = False


def parse_target(text: str) -> tuple[str, int]:
    """HOST, HOST:PORT, [IPv6]:PORT or a bare IPv6 address; port 443 by default."""
    text = text.strip()
    match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\[\]\s/]+)(?::(\d+))?", text)
    if match is None:
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            raise ValueError(f"'{text}' is not HOST[:PORT]") from None
        return text, 443
    host = match[1] or match[3]
    port_text = match[2] or match[4]
    port = int(port_text) if port_text else 443
    if not 0 < port < 65536:
        raise ValueError(f"port {port} in '{text}' is outside 1-65535")
    return host, port


def _ssl_error(exc: SSL.Error) -> str:
    """OpenSSL's error queue as one phrase ("tlsv1 alert protocol version")."""
    args = exc.args[0] if exc.args else None
    if isinstance(args, list) and args and isinstance(args[-1], tuple):
        return str(args[-1][-1])
    return str(exc) or type(exc).__name__


def _peer_chain(conn: SSL.Connection) -> list[x509.Certificate]:
    try:
        chain = conn.get_peer_cert_chain(as_cryptography=True)
    except TypeError:  # pyOpenSSL before 24.3
        chain = [c.to_cryptography() for c in conn.get_peer_cert_chain() or []]
    return list(chain or [])


def _wait(sock: socket.socket, write: bool, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    ready = select.select([], [sock], [], remaining) if write else select.select(
        [sock], [], [], remaining)
    if not any(ready):
        raise TimeoutError


def probe(host: str, port: int, servername: str | None, version: tuple[str, int],
          timeout: float = 10.0) -> Probe:
    """One handshake offering exactly one TLS version; CannotConnect when TCP fails."""
    name, number = version
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as exc:
        raise CannotConnect(f"cannot resolve {host}: {exc.strerror}") from None
    except TimeoutError:
        raise CannotConnect(f"cannot connect to {host}:{port}: timed out after "
                            f"{timeout:g} s") from None
    except OSError as exc:
        raise CannotConnect(f"cannot connect to {host}:{port}: "
                            f"{exc.strerror or exc}") from None
    deadline = time.monotonic() + timeout
    try:
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(number)
        context.set_max_proto_version(number)
        context.set_cipher_list(PROBE_CIPHERS)
        # Judged by tls_rules, not by OpenSSL: the handshake must finish to show the chain.
        context.set_verify(SSL.VERIFY_NONE)
        sock.setblocking(False)
        conn = SSL.Connection(context, sock)
        if servername and not is_ip_literal(servername):
            conn.set_tlsext_host_name(servername.encode("idna"))
        conn.set_connect_state()
        while True:
            try:
                conn.do_handshake()
                break
            except SSL.WantReadError:
                _wait(sock, False, deadline)
            except SSL.WantWriteError:
                _wait(sock, True, deadline)
        result = Probe(name, True, conn.get_protocol_version_name(), conn.get_cipher_name(),
                       _peer_chain(conn))
        try:
            conn.shutdown()
        except SSL.Error:
            pass
        return result
    except SSL.SysCallError as exc:
        return Probe(name, False, error="the server closed the connection"
                     if exc.args and exc.args[0] in (-1, 0) else _ssl_error(exc))
    except SSL.Error as exc:
        return Probe(name, False, error=_ssl_error(exc))
    except TimeoutError:
        return Probe(name, False, error=f"no answer within {timeout:g} s", timed_out=True)
    except OSError as exc:
        return Probe(name, False, error=exc.strerror or str(exc))
    finally:
        sock.close()


# --- the report --------------------------------------------------------------------------------

@dataclass
class Report:
    target: str
    servername: str | None
    probes: list[Probe]
    checks: list[Check]
    chain: list[x509.Certificate]
    judged_on: Probe

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.failed]


def check_server(host: str, port: int, servername: str | None,
                 roots: Sequence[x509.Certificate], rules: TlsRules,
                 timeout: float = 10.0, now: datetime | None = None) -> Report:
    """Probe every version, then judge the chain of the highest one accepted."""
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    found: list[Probe] = []
    # Newest first: a server that answers neither TLS 1.3 nor 1.2 within the timeout is
    # not worth waiting on twice more.
    for version in reversed(PROBE_VERSIONS):
        found.append(probe(host, port, servername, version, timeout))
        if len(found) == 2 and all(p.timed_out for p in found):
            raise CannotConnect(f"{target} accepts connections but answered no TLS "
                                f"handshake within {timeout:g} s")
    probes = found[::-1]
    accepted = [p for p in probes if p.accepted]
    if not accepted:
        reasons = "; ".join(f"{p.version}: {p.error}" for p in probes)
        raise CannotConnect(f"{target} completed no TLS handshake ({reasons})")
    best = accepted[-1]
    if not best.chain:
        raise CannotConnect(f"{target} sent no certificate")
    verdict = audit_chain(best.chain, servername or host, best.negotiated, best.cipher, roots,
                          rules, now or datetime.now(UTC))
    by_version = {p.version: p.accepted for p in probes}
    legacy = check_legacy(by_version["TLSv1.2"], by_version["TLSv1.3"])
    checks = [verdict.checks[0], legacy, *verdict.checks[1:]]
    return Report(target, servername, probes, checks, best.chain, best)


def _severity(check: Check) -> str:
    if check.rule == "tls.ats":
        return "warning (error on iOS)"
    return RULES[check.rule].severity.value


def _result(check: Check) -> str:
    return {True: "pass", False: "FAIL", None: "-"}[check.passed]


def chain_rows(chain: Sequence[x509.Certificate]) -> list[dict[str, Any]]:
    rows = []
    for cert in chain:
        oid = cert.signature_algorithm_oid
        signature = str(getattr(oid, "_name", oid.dotted_string))  # OpenSSL's short name
        dns, ips, _ = names_of(cert)
        rows.append({
            "subject": cert.subject.rfc4514_string(),
            "issuer": cert.issuer.rfc4514_string(),
            "key": key_description(cert),
            "signature": signature,
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "san": [*dns, *ips],
            "sha256": cert.fingerprint(hashes.SHA256()).hex(),
        })
    return rows


def as_json(report: Report) -> dict[str, Any]:
    return {
        "target": report.target,
        "servername": report.servername,
        "probes": [{"version": p.version, "accepted": p.accepted, "cipher": p.cipher,
                    "error": p.error or None} for p in report.probes],
        "negotiated": {"version": report.judged_on.negotiated,
                       "cipher": report.judged_on.cipher},
        "checks": [{"rule": c.rule, "check": c.name, "result": _result(c).lower(),
                    "severity": _severity(c), "detail": c.detail} for c in report.checks],
        "chain": chain_rows(report.chain),
        "failed": sorted({c.rule for c in report.failed}),
        "passed": not report.failed,
    }


def as_text(report: Report) -> str:
    lines = [f"wxgate check-cert {report.target}"
             + (f" (SNI {report.servername})" if report.servername else " (no SNI)")]
    versions = []
    for p in report.probes:
        versions.append(f"{p.version} accepted ({p.cipher})" if p.accepted
                        else f"{p.version} refused ({p.error})")
    lowest = next(p.version for p in report.probes if p.accepted)
    lines.append("TLS versions: " + ", ".join(versions))
    lines.append(f"Lowest accepted: {lowest}; judged on {report.judged_on.negotiated} with "
                 f"{report.judged_on.cipher}")
    lines.append("")
    width_rule = max(len(c.rule) for c in report.checks)
    width_check = max(len(c.name) for c in report.checks)
    lines.append(f"{'rule':<{width_rule}}  {'check':<{width_check}}  result  reason")
    for c in report.checks:
        lines.append(f"{c.rule:<{width_rule}}  {c.name:<{width_check}}  {_result(c):<6}  "
                     f"{c.detail}")
    lines.append("")
    lines.append(f"Chain as sent ({len(report.chain)} certificate"
                 f"{'s' if len(report.chain) != 1 else ''}, leaf first):")
    for i, (cert, row) in enumerate(zip(report.chain, chain_rows(report.chain), strict=True)):
        lines.append(f"  #{i} {describe(cert)}  issued by {row['issuer']}")
        lines.append(f"     {row['key']}, {row['signature']}, valid {row['not_before'][:10]} "
                     f"to {row['not_after'][:10]}"
                     + (f", SAN {', '.join(row['san'])}" if row["san"] else ", no SAN"))
        lines.append(f"     SHA-256 {row['sha256']}")
    lines.append("")
    failed = report.failed
    if failed:
        rules = ", ".join(sorted({c.rule for c in failed}))
        lines.append(f"FAIL: {len(failed)} check{'s' if len(failed) != 1 else ''} failed "
                     f"({rules}).")
    else:
        lines.append("PASS: every rule passed.")
    return "\n".join(lines)


# --- command line ------------------------------------------------------------------------------

def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "check-cert", help="connect to HOST[:PORT] and judge every certificate/TLS rule",
        description="Connect to HOST[:PORT] as a phone would and report every certificate "
                    "and TLS rule as pass/fail with the reason. Exit 0 all pass, 1 any "
                    "fail, 2 cannot connect.")
    parser.add_argument("target", metavar="HOST[:PORT]", help="server to check (port 443 "
                        "by default)")
    parser.add_argument("--cafile", help="PEM file of trusted roots, instead of the "
                        "system's")
    parser.add_argument("--servername", help="SNI and name to check the certificate "
                        "against (default: HOST)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("-c", "--config", help="take tls: rules (min_version, ats, "
                        "distrusted_issuers) from this wxgate config")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds per connection (default 10)")
    parser.set_defaults(func=run)
    return parser


def _fail(message: str) -> int:
    print(f"wxgate check-cert: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except KeyboardInterrupt:
        return _fail("interrupted.")
    except Exception as exc:  # noqa: BLE001 - one sentence, never a traceback
        return _fail(f"unexpected {type(exc).__name__}: {exc}.")


def _run(args: argparse.Namespace) -> int:
    try:
        host, port = parse_target(args.target)
    except ValueError as exc:
        return _fail(f"{exc}.")
    if args.timeout <= 0:
        return _fail(f"--timeout must be a positive number of seconds, not {args.timeout}.")
    rules = TlsRules()
    if getattr(args, "config", None):
        try:
            rules = load_config(args.config).tls
        except ConfigError as exc:
            return _fail(f"{exc.problems[0] if exc.problems else exc}.")
    if args.cafile:
        try:
            roots: Sequence[x509.Certificate] = load_roots([args.cafile])
        except OSError as exc:
            return _fail(f"cannot read --cafile {args.cafile}: {exc.strerror or exc}.")
        if not roots:
            return _fail(f"--cafile {args.cafile} holds no PEM certificate.")
    else:
        roots = system_roots()
    servername = args.servername or (None if is_ip_literal(host) else host)
    try:
        report = check_server(host, port, servername, roots, rules, args.timeout)
    except CannotConnect as exc:
        return _fail(f"{exc}.")
    if args.json:
        print(json.dumps(as_json(report), indent=2, ensure_ascii=False))
    else:
        print(as_text(report))
    return 1 if report.failed else 0
