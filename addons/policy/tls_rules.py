"""The certificate and TLS rules of SPEC §6, judged the way the phone judges them.

Pure: `cryptography` objects and the negotiated version and cipher in, checks out. No
mitmproxy, no sockets, no files: the live audit, the offline audit and `check-cert`
all feed this module what they saw, so the three can't disagree.

The chain is judged as the server sent it (leaf first). Phones do no AIA fetching, so
a missing intermediate is a failure here even where a desktop browser would repair it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from .config import TlsRules
from .rules import Severity, Violation

# --- the rules, as data -----------------------------------------------------------------------

# (check name, rule id, what passing means); the order is the order of check-cert's table.
CHECKS: tuple[tuple[str, str, str], ...] = (
    ("version", "tls.version", "negotiated TLS version at or above tls.min_version"),
    ("legacy", "tls.no_legacy", "TLS 1.2 still accepted (older Android phones need it)"),
    ("trust", "tls.untrusted", "chain leads to a trusted root"),
    ("self_signed", "tls.self_signed", "leaf is not self-signed"),
    ("complete_chain", "tls.incomplete_chain", "server sends the intermediates"),
    ("hostname", "tls.hostname", "certificate covers the host"),
    ("expired", "tls.expired", "no certificate in the chain has expired"),
    ("not_yet_valid", "tls.not_yet_valid", "every certificate in the chain is already valid"),
    ("distrusted_issuer", "tls.distrusted_issuer", "no distrusted CA in the chain"),
)

# Apple ATS, one row per rule: (name, what it asks). Each failing one is its own tls.ats.
ATS_RULES: tuple[tuple[str, str], ...] = (
    ("tls_version", "TLS 1.2 or later"),
    ("forward_secrecy", "a forward-secret (ECDHE) cipher"),
    ("signature", "SHA-256 or stronger signatures on the leaf and intermediates"),
    ("key_size", "RSA keys of 2048 bits or more, ECC keys of 256 bits or more"),
    ("validity", "a leaf valid for 825 days or fewer"),
    ("san", "DNS names in subjectAltName"),
    ("eku", "the serverAuth extended key usage"),
)
EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}
ATS_MAX_VALIDITY = timedelta(days=825)
ATS_MIN_RSA_BITS = 2048
ATS_MIN_EC_BITS = 256
ATS_HASHES = frozenset({"sha256", "sha384", "sha512"})
# Longest chain followed before giving up: real chains have 2-4 certificates.
MAX_PATH = 10

# TLS version names as OpenSSL, mitmproxy and the config write them -> comparable tuple.
VERSIONS: dict[str, tuple[int, int]] = {
    "sslv3": (0, 3), "tlsv1": (1, 0), "tlsv1.0": (1, 0), "tlsv1.1": (1, 1),
    "tlsv1.2": (1, 2), "tlsv1.3": (1, 3),
    "1.0": (1, 0), "1": (1, 0), "1.1": (1, 1), "1.2": (1, 2), "1.3": (1, 3),
}

# What a refused handshake's message says -> the rule. First match wins, so the more
# specific phrases come first. Messages are OpenSSL's verify strings as mitmproxy
# reports them ("Certificate verify failed: ...") and its own protocol-version text.
HANDSHAKE_ERRORS: tuple[tuple[str, str], ...] = (
    ("self-signed certificate in certificate chain", "tls.untrusted"),
    ("self signed certificate in certificate chain", "tls.untrusted"),
    ("self-signed certificate", "tls.self_signed"),
    ("self signed certificate", "tls.self_signed"),
    # The leaf's issuer was not sent and is no root: most often a missing intermediate.
    ("unable to get local issuer certificate", "tls.incomplete_chain"),
    ("unable to verify the first certificate", "tls.incomplete_chain"),
    ("unable to get issuer certificate", "tls.untrusted"),
    ("certificate has expired", "tls.expired"),
    ("certificate is not yet valid", "tls.not_yet_valid"),
    ("hostname mismatch", "tls.hostname"),
    ("ip address mismatch", "tls.hostname"),
    ("unsupported certificate purpose", "tls.ats"),
    ("key too weak", "tls.ats"),
    ("key too small", "tls.ats"),
    ("digest algorithm too weak", "tls.ats"),
    ("cannot agree on a tls version", "tls.version"),
    ("unsupported protocol", "tls.version"),
    ("protocol version", "tls.version"),
    ("no protocols available", "tls.version"),
    ("invalid ca certificate", "tls.untrusted"),
    ("certificate signature failure", "tls.untrusted"),
    ("unable to get certificate crl", "tls.untrusted"),
    ("certificate verify failed", "tls.untrusted"),
)

# OpenSSL X509_V_ERR_* codes a verify callback sees -> the rules that judge the same thing.
# Any other code is about something the rules do not judge, and OpenSSL's refusal stands.
OPENSSL_VERIFY_ERRORS: dict[int, frozenset[str]] = {
    2: frozenset({"tls.incomplete_chain", "tls.untrusted"}),  # unable to get issuer cert
    4: frozenset({"tls.untrusted"}),  # unable to decrypt certificate signature
    6: frozenset({"tls.untrusted"}),  # unable to decode issuer public key
    7: frozenset({"tls.untrusted"}),  # certificate signature failure
    9: frozenset({"tls.not_yet_valid"}),
    10: frozenset({"tls.expired"}),
    18: frozenset({"tls.self_signed"}),
    19: frozenset({"tls.untrusted"}),  # self-signed certificate in chain
    20: frozenset({"tls.incomplete_chain", "tls.untrusted"}),  # unable to get local issuer
    21: frozenset({"tls.incomplete_chain", "tls.untrusted"}),  # unable to verify leaf sig
    24: frozenset({"tls.untrusted"}),  # invalid CA certificate
    26: frozenset({"tls.ats"}),  # unsupported certificate purpose (no serverAuth)
    62: frozenset({"tls.hostname"}),
    64: frozenset({"tls.hostname"}),  # IP address mismatch
    66: frozenset({"tls.ats"}),  # EE key too small
    67: frozenset({"tls.ats"}),  # CA key too small
    68: frozenset({"tls.ats"}),  # CA signature digest too weak
}


# --- results -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    """One row of the verdict: a rule (or one ATS rule), passed or not, and why."""

    name: str
    rule: str
    # None: not judged (ATS off, cipher unknown, or another rule already covers it).
    passed: bool | None
    detail: str

    @property
    def failed(self) -> bool:
        return self.passed is False

    def violation(self) -> Violation:
        extra = {"ats_rule": self.name.removeprefix("ats.")} if self.rule == "tls.ats" else {}
        return Violation(self.rule, self.detail, extra=extra)


@dataclass(frozen=True)
class ChainVerdict:
    checks: tuple[Check, ...]
    # The path followed from the leaf (leaf first); ends at a trusted root when trusted.
    path: tuple[x509.Certificate, ...] = ()
    trusted: bool = False
    fingerprint: str = ""

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.failed]

    @property
    def violations(self) -> list[Violation]:
        return [c.violation() for c in self.failures]


@dataclass
class _Path:
    certs: list[x509.Certificate] = field(default_factory=list)
    trusted: bool = False
    # How following the issuers ended when not trusted.
    end: str = ""
    detail: str = ""

    def certs_without_anchor(self) -> list[x509.Certificate]:
        """The certificates the server is answerable for: all but the trusted root."""
        return self.certs[:-1] if self.trusted and len(self.certs) > 1 else list(self.certs)


# --- entry points ------------------------------------------------------------------------------

def audit_chain(
    chain: Sequence[x509.Certificate], host: str, tls_version: str | None, cipher: str | None,
    roots: Sequence[x509.Certificate], rules: TlsRules, now: datetime,
) -> ChainVerdict:
    """Every rule as a Check, passed or not; the verdict's `violations` are the failures,
    one Violation each (one per ATS rule)."""
    if not chain:
        raise ValueError("the server sent no certificate")
    leaf = chain[0]
    path = build_path(chain, roots)
    checks: list[Check] = [check_version(tls_version, rules.min_version)]
    checks += _trust_checks(leaf, path)
    checks.append(check_hostname(leaf, host))
    # Validity and issuers are judged on what the phone would look at: the path it built,
    # and the certificates the server sent.
    judged = _unique([*path.certs_without_anchor(), *chain]) if path.trusted else _unique(
        [*path.certs, *chain])
    checks += _validity_checks(judged, now)
    checks.append(check_distrusted(judged, rules.distrusted_issuers))
    if rules.ats:
        version_failed = checks[0].failed
        checks += ats_checks(path, chain, host, tls_version, cipher, version_failed)
    else:
        checks += [Check(f"ats.{name}", "tls.ats", None, "tls.ats is off (ats: false)")
                   for name, _ in ATS_RULES]
    return ChainVerdict(tuple(checks), tuple(path.certs), path.trusted,
                        chain_fingerprint(chain))


def check_legacy(accepts_tls12: bool | None, accepts_tls13: bool | None) -> Check:
    """tls.no_legacy: a server that takes TLS 1.3 but refuses TLS 1.2."""
    if accepts_tls12 is None:
        return Check("legacy", "tls.no_legacy", None, "TLS 1.2 was not probed")
    if accepts_tls12:
        return Check("legacy", "tls.no_legacy", True, "the server accepts TLS 1.2")
    if accepts_tls13:
        return Check("legacy", "tls.no_legacy", False,
                     "the server refuses TLS 1.2 and accepts only TLS 1.3; older Android "
                     "phones cannot connect")
    return Check("legacy", "tls.no_legacy", None, "the server accepts neither TLS 1.2 nor 1.3")


def classify_handshake_error(message: str) -> str | None:
    """The rule a refused handshake's message names; None when it names no TLS rule
    (the server closed the connection, does not speak TLS, ...)."""
    text = message.lower()
    for phrase, rule in HANDSHAKE_ERRORS:
        if phrase in text:
            return rule
    return None


def for_platform(violations: Iterable[Violation], platform: str | None) -> list[Violation]:
    """Per-platform severity: tls.ats fails the call on iOS and only warns elsewhere."""
    return [replace(v, severity=Severity.ERROR) if v.rule == "tls.ats" and platform == "ios"
            else v for v in violations]


def rules_judge(openssl_error: int) -> bool:
    """Whether an OpenSSL verify error is about something these rules judge themselves
    (trust, validity, hostname, key and signature strength, key usage), so that the rules'
    verdict, not OpenSSL's, decides. They differ by design: the rules add the system roots
    to ssl_verify_upstream_trusted_ca (mitmproxy loads either), fall back to the CN when a
    leaf has no subjectAltName (its absence is an ATS rule), and let ATS-only defects pass
    for clients other than iOS."""
    return openssl_error in OPENSSL_VERIFY_ERRORS


def chain_fingerprint(chain: Sequence[x509.Certificate]) -> str:
    """SHA-256 over the chain as sent: the same certificates in the same order."""
    digest = hashlib.sha256()
    for cert in chain:
        digest.update(cert.fingerprint(hashes.SHA256()))
    return digest.hexdigest()


def parse_version(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    return VERSIONS.get(text.strip().lower().replace(" ", ""))


# --- chain building ----------------------------------------------------------------------------

def build_path(chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate]) -> _Path:
    """Follow issuers from the leaf through what the server sent to a trusted root.

    A link counts only when the names chain and the signature verifies with the
    issuer's key. A root may end the path at any step (a server may send the root, or a
    cross-signed intermediate that a root replaces).
    """
    root_fps = {r.fingerprint(hashes.SHA256()) for r in roots}
    by_subject: dict[bytes, list[x509.Certificate]] = {}
    for root in roots:
        by_subject.setdefault(root.subject.public_bytes(), []).append(root)
    sent = list(chain[1:])
    path = _Path([chain[0]])
    current = chain[0]
    for _ in range(MAX_PATH):
        if current.fingerprint(hashes.SHA256()) in root_fps:
            path.trusted = True
            return path
        issuer_name = current.issuer.public_bytes()
        anchor = next((r for r in by_subject.get(issuer_name, []) if signed_by(current, r)),
                      None)
        if anchor is not None:
            path.certs.append(anchor)
            path.trusted = True
            return path
        named = [c for c in sent if c.subject.public_bytes() == issuer_name
                 and c not in path.certs]
        issuer = next((c for c in named if signed_by(current, c)), None)
        if issuer is None:
            if is_self_signed(current):
                path.end = "self_signed"
            elif named:
                path.end = "bad_signature"
                path.detail = (f"the signature of {describe(current)} does not verify with the "
                               f"key of {describe(named[0])}")
            elif by_subject.get(issuer_name):
                path.end = "bad_signature"
                path.detail = (f"the signature of {describe(current)} does not verify with the "
                               f"key of the trusted root {_cn(current.issuer)}")
            else:
                path.end = "missing_issuer"
            return path
        if not is_ca(issuer):
            path.end = "not_ca"
            path.detail = (f"{describe(issuer)} signed {describe(current)} but is not a CA "
                           "certificate (basicConstraints CA:TRUE)")
            return path
        path.certs.append(issuer)
        current = issuer
    path.end = "too_long"
    return path


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Names chain and the signature verifies with the issuer's public key.

    By hand rather than `verify_directly_issued_by`, which refuses SHA-1: a SHA-1
    signed chain is still a chain, and its weakness is an ATS rule of its own.
    """
    if cert.issuer != issuer.subject:
        return False
    key = issuer.public_key()
    try:
        params = cert.signature_algorithm_parameters
        algorithm = cert.signature_hash_algorithm
        tbs, sig = cert.tbs_certificate_bytes, cert.signature
        if isinstance(key, rsa.RSAPublicKey):
            if not isinstance(params, padding.PSS | padding.PKCS1v15) or algorithm is None:
                return False
            key.verify(sig, tbs, params, algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(params, ec.ECDSA):
                return False
            key.verify(sig, tbs, params)
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(sig, tbs)
        elif isinstance(key, dsa.DSAPublicKey) and algorithm is not None:
            key.verify(sig, tbs, algorithm)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and signed_by(cert, cert)


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _has_aia_issuer(cert: x509.Certificate) -> bool:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return False
    return any(d.access_method == AuthorityInformationAccessOID.CA_ISSUERS for d in aia)


def _trust_checks(leaf: x509.Certificate, path: _Path) -> list[Check]:
    """tls.untrusted, tls.self_signed and tls.incomplete_chain: exactly one of them fails
    for an untrusted chain, the one that names what the server should fix."""
    trusted = Check("trust", "tls.untrusted", True,
                    f"the chain leads to the trusted root {describe(path.certs[-1])}")
    not_self = Check("self_signed", "tls.self_signed", True, "the leaf is not self-signed")
    complete = Check("complete_chain", "tls.incomplete_chain", True,
                     "the server sends every certificate up to a trusted root")
    if path.trusted:
        if len(path.certs) == 1:
            trusted = replace(trusted, detail=f"the leaf {describe(leaf)} is itself a trusted "
                                              "root")
        return [trusted, not_self, complete]
    top = path.certs[-1]
    if path.end == "self_signed" and top is leaf:
        not_self = replace(not_self, passed=False, detail=(
            f"the leaf {describe(leaf)} is self-signed and not a trusted root"))
        trusted = replace(trusted, passed=None, detail="see tls.self_signed")
        complete = replace(complete, passed=None, detail="see tls.self_signed")
    elif path.end == "missing_issuer" and (top is leaf or _has_aia_issuer(top)):
        # The issuer is published (AIA) or the server sent no intermediate at all: the
        # server must send it; the phone fetches nothing.
        sent_note = ("sent only the leaf" if top is leaf
                     else f"did not send the issuer of {describe(top)}")
        complete = replace(complete, passed=False, detail=(
            f"the server {sent_note}: no certificate for {_cn(top.issuer)} was sent and no "
            "trusted root has that name; phones do not fetch missing intermediates"))
        trusted = replace(trusted, passed=None, detail="see tls.incomplete_chain")
    else:
        reason = {
            "self_signed": f"the chain ends at {describe(top)}, which is not a trusted root",
            "missing_issuer": (f"the chain ends at {describe(top)}, whose issuer "
                               f"{_cn(top.issuer)} is not a trusted root"),
            "too_long": f"no trusted root within {MAX_PATH} certificates",
        }.get(path.end, path.detail)
        trusted = replace(trusted, passed=False, detail=reason)
        complete = replace(complete, passed=None, detail="see tls.untrusted")
    return [trusted, not_self, complete]


# --- hostname (RFC 6125) -----------------------------------------------------------------------

_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$|^xn--[a-z0-9-]+$")


def names_of(cert: x509.Certificate) -> tuple[list[str], list[str], bool]:
    """(DNS names, IP addresses, whether a subjectAltName extension exists)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], [], False
    return (san.get_values_for_type(x509.DNSName),
            [str(ip) for ip in san.get_values_for_type(x509.IPAddress)], True)


def match_hostname(pattern: str, host: str) -> bool:
    """RFC 6125 §6.4: exact, case-insensitive; a wildcard only as the whole left-most
    label, standing for exactly one label, and never directly under a public suffix-like
    single label (`*.com`). Partial wildcards (`f*.example.com`) match nothing, as on
    the phones."""
    pattern = pattern.strip().lower().rstrip(".")
    host = host.strip().lower().rstrip(".")
    if not pattern or not host:
        return False
    if "*" not in pattern:
        return pattern == host
    first, _, rest = pattern.partition(".")
    if first != "*" or "*" in rest or rest.count(".") < 1:
        return False
    head, _, host_rest = host.partition(".")
    return bool(head) and host_rest == rest


def check_hostname(leaf: x509.Certificate, host: str) -> Check:
    host = host.strip().lower().rstrip(".").strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    dns, ips, has_san = names_of(leaf)
    if ip is not None:
        ok = any(ipaddress.ip_address(a) == ip for a in ips)
        shown = ", ".join(ips) or "no IP address"
    elif has_san:
        ok = any(match_hostname(n, host) for n in dns)
        shown = ", ".join(dns) or "no DNS name"
    else:
        # Without a subjectAltName the CN is all there is; a missing SAN is an ATS rule.
        cns = [_text(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        ok = any(match_hostname(n, host) for n in cns)
        shown = ("CN " + ", ".join(cns)) if cns else "no name at all"
    if ok:
        return Check("hostname", "tls.hostname", True, f"{host} is covered by {shown}")
    return Check("hostname", "tls.hostname", False,
                 f"the certificate is for {shown}, not {host}")


# --- the other rules ---------------------------------------------------------------------------

def check_version(tls_version: str | None, min_version: str) -> Check:
    got, want = parse_version(tls_version), parse_version(min_version)
    if got is None or want is None:
        return Check("version", "tls.version", None,
                     f"negotiated version unknown ({tls_version or 'not recorded'})")
    if got < want:
        return Check("version", "tls.version", False,
                     f"the server negotiated {tls_version}, below tls.min_version {min_version}")
    return Check("version", "tls.version", True,
                 f"{tls_version} is at or above tls.min_version {min_version}")


def _validity_checks(certs: Sequence[x509.Certificate], now: datetime) -> list[Check]:
    expired = [c for c in certs if now > c.not_valid_after_utc]
    early = [c for c in certs if now < c.not_valid_before_utc]
    return [
        Check("expired", "tls.expired", not expired,
              "; ".join(f"{describe(c)} expired on {_day(c.not_valid_after_utc)}"
                        for c in expired) or "every certificate is within its validity"),
        Check("not_yet_valid", "tls.not_yet_valid", not early,
              "; ".join(f"{describe(c)} is valid only from {_day(c.not_valid_before_utc)}"
                        for c in early) or "every certificate is already valid"),
    ]


def check_distrusted(certs: Sequence[x509.Certificate], distrusted: Sequence[str]) -> Check:
    hits = []
    for cert in certs:
        names = [_text(a.value) for oid in (NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME)
                 for a in cert.issuer.get_attributes_for_oid(oid)]
        for bad in distrusted:
            if bad and any(bad.lower() in n.lower() for n in names):
                hits.append(f"{describe(cert)} was issued by {_cn(cert.issuer)}, a "
                            f"distrusted CA ({bad})")
                break
    if hits:
        return Check("distrusted_issuer", "tls.distrusted_issuer", False, "; ".join(hits))
    listed = ", ".join(distrusted) or "none configured"
    return Check("distrusted_issuer", "tls.distrusted_issuer", True,
                 f"no issuer matches tls.distrusted_issuers ({listed})")


def ats_checks(
    path: _Path, chain: Sequence[x509.Certificate], host: str, tls_version: str | None,
    cipher: str | None, version_failed: bool,
) -> list[Check]:
    leaf = chain[0]
    # The leaf and the intermediates: a root's own self-signature and key are the
    # trust store's business.
    issued = path.certs_without_anchor() if path.trusted else _unique([*path.certs, *chain])
    issued = [c for c in issued if c is leaf or not is_self_signed(c)]
    out = [_ats_version(tls_version, version_failed), _ats_cipher(tls_version, cipher),
           _ats_signature(issued), _ats_keys(leaf, issued), _ats_validity(leaf),
           _ats_san(leaf, host), _ats_eku(leaf)]
    return out


def _ats(name: str, passed: bool | None, detail: str) -> Check:
    return Check(f"ats.{name}", "tls.ats", passed, f"ATS {name}: {detail}")


def _ats_version(tls_version: str | None, version_failed: bool) -> Check:
    got = parse_version(tls_version)
    if got is None:
        return _ats("tls_version", None, "negotiated version unknown")
    if got >= (1, 2):
        return _ats("tls_version", True, f"{tls_version}")
    if version_failed:
        # Already a tls.version error for every client; one defect, one rule.
        return _ats("tls_version", None, f"{tls_version} is reported as tls.version")
    return _ats("tls_version", False, f"the server negotiated {tls_version}; ATS needs TLS 1.2 "
                                      "or later")


def _ats_cipher(tls_version: str | None, cipher: str | None) -> Check:
    got = parse_version(tls_version)
    if got is not None and got >= (1, 3):
        return _ats("forward_secrecy", True, f"{tls_version} ciphers are all forward-secret")
    if not cipher:
        return _ats("forward_secrecy", None, "negotiated cipher unknown")
    if "ECDHE" in cipher.upper():
        return _ats("forward_secrecy", True, f"{cipher} is ECDHE")
    return _ats("forward_secrecy", False, f"the server negotiated {cipher}, which is not "
                                          "ECDHE (no forward secrecy)")


def _ats_signature(certs: Sequence[x509.Certificate]) -> Check:
    weak = []
    for cert in certs:
        try:
            algorithm = cert.signature_hash_algorithm
        except UnsupportedAlgorithm:
            weak.append(f"{describe(cert)} has an unknown signature algorithm")
            continue
        # Ed25519/Ed448 sign without a separate hash.
        if algorithm is not None and algorithm.name not in ATS_HASHES:
            weak.append(f"{describe(cert)} is signed with {algorithm.name.upper()}")
    if weak:
        return _ats("signature", False, "; ".join(weak) + " (ATS needs SHA-256 or stronger)")
    return _ats("signature", True, "every signature uses SHA-256 or stronger")


def _ats_keys(leaf: x509.Certificate, certs: Sequence[x509.Certificate]) -> Check:
    weak = []
    for cert in certs:
        key = cert.public_key()
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < ATS_MIN_RSA_BITS:
            weak.append(f"{describe(cert)} has a {key.key_size}-bit RSA key")
        elif (cert is leaf and isinstance(key, ec.EllipticCurvePublicKey)
              and key.key_size < ATS_MIN_EC_BITS):
            weak.append(f"{describe(cert)} has a {key.key_size}-bit ECC key")
    if weak:
        return _ats("key_size", False, "; ".join(weak) + " (ATS needs RSA >= 2048 or ECC >= "
                                                         "256)")
    return _ats("key_size", True, f"the leaf has {key_description(leaf)}")


def _ats_validity(leaf: x509.Certificate) -> Check:
    period = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    days = period.days + (1 if period.seconds else 0)
    if period > ATS_MAX_VALIDITY:
        return _ats("validity", False, f"the leaf is valid for {days} days (ATS allows at "
                                       "most 825)")
    return _ats("validity", True, f"the leaf is valid for {days} days")


def _ats_san(leaf: x509.Certificate, host: str) -> Check:
    dns, ips, has_san = names_of(leaf)
    if not has_san:
        return _ats("san", False, "the leaf has no subjectAltName; iOS ignores the CN")
    if not dns and not ips:
        return _ats("san", False, "the leaf's subjectAltName has no DNS name")
    return _ats("san", True, "subjectAltName has " + ", ".join([*dns, *ips]))


def _ats_eku(leaf: x509.Certificate) -> Check:
    try:
        usages = list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return _ats("eku", False, "the leaf has no extendedKeyUsage; iOS needs serverAuth")
    if ExtendedKeyUsageOID.SERVER_AUTH in usages:
        return _ats("eku", True, "extendedKeyUsage includes serverAuth")
    names = ", ".join(EKU_NAMES.get(u, u.dotted_string) for u in usages) or "nothing"
    return _ats("eku", False, f"extendedKeyUsage is {names}, without serverAuth")


# --- describing certificates -------------------------------------------------------------------

def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _cn(name: x509.Name) -> str:
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return f"'{_text(cns[0].value)}'" if cns else f"'{name.rfc4514_string()}'"


def describe(cert: x509.Certificate) -> str:
    return _cn(cert.subject)


def key_description(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name} ({key.key_size})"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__


def _day(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC")


def _unique(certs: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    seen: list[x509.Certificate] = []
    for cert in certs:
        if cert not in seen:
            seen.append(cert)
    return seen
