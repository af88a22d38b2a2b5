"""`wxgate check-cert HOST[:PORT]`: connect the way a phone does and judge every
certificate and TLS rule of SPEC §6, rule by rule, with the chain exactly as sent.

One handshake per TLS version (1.0 to 1.3) shows which versions the server accepts;
the highest one is what a phone negotiates, and its chain and cipher are judged by
`policy.tls_rules`, the same code the live proxy uses. The handshakes and the trust roots
are `tls_probe`'s, which the proxy's TlsAudit uses too.

Exit codes: 0 every rule passes, 1 any rule fails, 2 the server can't be reached (or
the arguments can't be used), each with one plain sentence.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

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
from .tls_probe import PROBE_VERSIONS, CannotConnect, Probe, load_roots, probe, system_roots


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

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`wxgate check-cert`'s arguments, on the parser `cli` made for it."""
    parser.description = ("Connect to HOST[:PORT] as a phone would and report every "
                          "certificate and TLS rule as pass/fail with the reason. Exit 0 all "
                          "pass, 1 any fail, 2 cannot connect.")
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
