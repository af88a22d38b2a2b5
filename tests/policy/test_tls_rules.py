"""Tests for addons.policy.tls_rules: each certificate defect yields exactly its rule,
the ATS rules name themselves, hostnames match as RFC 6125 says, and a refused
handshake's message is classified."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID
from wxgate.policy.config import TlsRules
from wxgate.policy.rules import RULES as TABLE
from wxgate.policy.rules import Severity, Violation
from wxgate.policy.tls_rules import (
    ATS_RULES,
    CHECKS,
    HANDSHAKE_ERRORS,
    OPENSSL_VERIFY_ERRORS,
    audit_chain,
    chain_fingerprint,
    check_hostname,
    check_legacy,
    classify_handshake_error,
    for_platform,
    match_hostname,
    parse_version,
    rules_judge,
)

from ..tls_chains import (
    DEFECTS,
    EXPECTED_ATS,
    EXPECTED_RULE,
    NOW,
    Issued,
    Pki,
    ec_key,
    issue,
    name,
)

TLS13 = ("TLSv1.3", "TLS_AES_128_GCM_SHA256")
RULES = TlsRules()


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


def host_for(defect: str) -> str:
    return f"{defect.replace('_', '-')}.tls.example.com"


def judge(pki: Pki, defect: str, rules: TlsRules = RULES,
          version: tuple[str, str | None] = TLS13) -> list[Violation]:
    host = host_for(defect)
    return audit_chain(pki.serve(host, defect).sent, host, version[0], version[1], pki.roots,
                       rules, NOW).violations


@pytest.mark.parametrize("defect", DEFECTS, ids=DEFECTS)
def test_each_defect_yields_exactly_its_rule(pki: Pki, defect: str):
    rules = [v.rule for v in judge(pki, defect)]
    expected = EXPECTED_RULE[defect]
    assert rules == ([expected] if expected else [])


@pytest.mark.parametrize("defect", sorted(EXPECTED_ATS), ids=sorted(EXPECTED_ATS))
def test_an_ats_violation_names_the_ats_rule_it_breaks(pki: Pki, defect: str):
    (violation,) = judge(pki, defect)
    ats_rule = EXPECTED_ATS[defect]
    assert violation.extra == {"ats_rule": ats_rule}
    assert violation.detail.startswith(f"ATS {ats_rule}: ")
    # Warning by itself; the platform decides whether it fails the call.
    assert violation.level is Severity.WARNING


@pytest.mark.parametrize("defect", sorted(EXPECTED_ATS), ids=sorted(EXPECTED_ATS))
def test_with_ats_off_the_ats_defects_pass(pki: Pki, defect: str):
    assert judge(pki, defect, TlsRules(ats=False)) == []


def test_every_ats_rule_has_a_row_even_when_it_passes(pki: Pki):
    host = host_for("good")
    verdict = audit_chain(pki.serve(host).sent, host, *TLS13, pki.roots, RULES, NOW)
    assert [c.name for c in verdict.checks if c.rule == "tls.ats"] == [
        f"ats.{name}" for name, _ in ATS_RULES]
    assert all(c.passed for c in verdict.checks)
    assert verdict.trusted and len(verdict.path) == 3


def test_details_name_what_is_wrong(pki: Pki):
    assert "sent only the leaf" in judge(pki, "leaf_only")[0].detail
    assert "'Stranger Root' is not a trusted root" in judge(pki, "untrusted")[0].detail
    assert "other.example.org, not wrong-host.tls.example.com" in judge(pki, "wrong_host")[
        0].detail
    assert "1024-bit RSA key" in judge(pki, "rsa1024")[0].detail
    assert "signed with SHA1" in judge(pki, "sha1")[0].detail
    assert "900 days" in judge(pki, "validity_900")[0].detail
    assert "clientAuth, without serverAuth" in judge(pki, "client_auth_eku")[0].detail
    assert "WoSign" in judge(pki, "wosign")[0].detail


# (negotiated version, cipher, tls.min_version) -> rule ids
VERSION_CASES = [
    ("TLSv1.3", "TLS_AES_256_GCM_SHA384", "1.2", []),
    ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256", "1.2", []),
    ("TLSv1.2", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "1.2", []),
    ("TLSv1.2", "AES128-GCM-SHA256", "1.2", ["tls.ats"]),
    # ATS asks for ECDHE; finite-field DHE does not count.
    ("TLSv1.2", "DHE-RSA-AES128-GCM-SHA256", "1.2", ["tls.ats"]),
    # The cipher of a TLS 1.2 handshake is unknown while it is verified: not judged.
    ("TLSv1.2", None, "1.2", []),
    ("TLSv1.1", "ECDHE-ECDSA-AES256-SHA", "1.2", ["tls.version"]),
    ("TLSv1", "ECDHE-ECDSA-AES256-SHA", "1.2", ["tls.version"]),
    # Below min_version is tls.version only; ATS's own TLS 1.2 rule shows when the config
    # allows older versions.
    ("TLSv1.1", "ECDHE-ECDSA-AES256-SHA", "1.0", ["tls.ats"]),
    ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256", "1.3", ["tls.version"]),
    (None, None, "1.2", []),
]


@pytest.mark.parametrize(("version", "cipher", "minimum", "expected"), VERSION_CASES,
                         ids=[f"{v}-{c}-min{m}" for v, c, m, _ in VERSION_CASES])
def test_version_and_cipher(pki: Pki, version: str | None, cipher: str | None, minimum: str,
                            expected: list[str]):
    rules = TlsRules(min_version=minimum)
    assert [v.rule for v in judge(pki, "good", rules, (version, cipher))] == expected


def test_forward_secrecy_failure_names_the_cipher(pki: Pki):
    (violation,) = judge(pki, "good", version=("TLSv1.2", "AES256-GCM-SHA384"))
    assert violation.extra == {"ats_rule": "forward_secrecy"}
    assert "AES256-GCM-SHA384" in violation.detail


@pytest.mark.parametrize(("text", "expected"), [
    ("TLSv1.3", (1, 3)), ("TLSv1.2", (1, 2)), ("TLSv1", (1, 0)), ("1.2", (1, 2)),
    ("SSLv3", (0, 3)), ("tlsv1.1", (1, 1)), ("", None), (None, None), ("TLSv9", None),
])
def test_parse_version(text: str | None, expected: tuple[int, int] | None):
    assert parse_version(text) == expected


# --- chains the server may send in other shapes ------------------------------------------------

def test_a_chain_sent_with_its_root_is_still_trusted(pki: Pki):
    host = host_for("good")
    sent = [*pki.serve(host).sent, pki.root.cert]
    assert audit_chain(sent, host, *TLS13, pki.roots, RULES, NOW).violations == []


def test_a_leaf_that_is_itself_a_trusted_root_is_not_self_signed(pki: Pki):
    host = host_for("self_signed")
    chain = pki.serve(host, "self_signed").sent
    assert audit_chain(chain, host, *TLS13, [*pki.roots, chain[0]], RULES, NOW).violations == []


def test_an_expired_intermediate_is_named(pki: Pki):
    old = issue(name("Old Intermediate"), ec_key(), pki.root, ca=True,
                not_before=NOW - 400 * dt.timedelta(days=1), days=100)
    host = "api.example.com"
    leaf = issue(name(host), ec_key(), old, ca=False, san=[host],
                 eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    (violation,) = audit_chain([leaf.cert, old.cert], host, *TLS13, pki.roots, RULES,
                               NOW).violations
    assert violation.rule == "tls.expired"
    assert "'Old Intermediate' expired" in violation.detail


def test_a_leaf_with_a_forged_issuer_name_is_untrusted(pki: Pki):
    host = "api.example.com"
    # Claims the real intermediate as its issuer, but is signed by another key.
    impostor = Issued(pki.intermediate.cert, ec_key())
    leaf = issue(name(host), ec_key(), impostor, ca=False, san=[host],
                 eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    (violation,) = audit_chain([leaf.cert, pki.intermediate.cert], host, *TLS13, pki.roots,
                               RULES, NOW).violations
    assert violation.rule == "tls.untrusted"
    assert "does not verify" in violation.detail


def test_an_issuer_that_is_not_a_ca_breaks_the_chain(pki: Pki):
    host = "api.example.com"
    not_ca = issue(name("Not A CA"), ec_key(), pki.intermediate, ca=False)
    leaf = issue(name(host), ec_key(), not_ca, ca=False, san=[host],
                 eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    sent = [leaf.cert, not_ca.cert, pki.intermediate.cert]
    (violation,) = audit_chain(sent, host, *TLS13, pki.roots, RULES, NOW).violations
    assert violation.rule == "tls.untrusted"
    assert "is not a CA certificate" in violation.detail


def _with_aia(issued: Issued, issuer: Issued) -> Issued:
    """The same CA certificate with an AIA caIssuers URL, as public CAs publish them."""
    cert = issued.cert
    builder = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
               .public_key(issued.key.public_key()).serial_number(cert.serial_number)
               .not_valid_before(cert.not_valid_before_utc)
               .not_valid_after(cert.not_valid_after_utc))
    for ext in cert.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    builder = builder.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
        x509.oid.AuthorityInformationAccessOID.CA_ISSUERS,
        x509.UniformResourceIdentifier("http://ca.example.com/issuer.crt"))]), False)
    return Issued(builder.sign(issuer.key, hashes.SHA256()), issued.key)  # type: ignore[arg-type]


@pytest.mark.parametrize(("published", "expected"), [
    (True, "tls.incomplete_chain"), (False, "tls.untrusted")],
    ids=["issuer-published-by-aia", "issuer-unknown"])
def test_a_missing_second_intermediate(pki: Pki, published: bool, expected: str):
    """Sent intermediates that stop short of a root: incomplete when the missing issuer is
    published (AIA caIssuers, as a public CA's are), untrusted when nothing says it exists."""
    upper = issue(name("Upper Intermediate"), ec_key(), pki.root, ca=True)
    lower = issue(name("Lower Intermediate"), ec_key(), upper, ca=True)
    if published:
        lower = _with_aia(lower, upper)
    host = "api.example.com"
    leaf = issue(name(host), ec_key(), lower, ca=False, san=[host],
                 eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    violations = audit_chain([leaf.cert, lower.cert], host, *TLS13, pki.roots, RULES,
                             NOW).violations
    assert [v.rule for v in violations] == [expected]


def test_distrusted_issuers_come_from_the_config(pki: Pki):
    mine = TlsRules(distrusted_issuers=("wxgate test intermediate",))
    assert [v.rule for v in judge(pki, "good", mine)] == ["tls.distrusted_issuer"]
    assert judge(pki, "wosign", TlsRules(distrusted_issuers=())) == []


def test_an_empty_chain_is_refused_with_a_sentence(pki: Pki):
    with pytest.raises(ValueError, match="sent no certificate"):
        audit_chain([], "api.example.com", *TLS13, pki.roots, RULES, NOW)


def test_the_fingerprint_is_of_the_chain_as_sent(pki: Pki):
    chain = pki.serve("api.example.com").sent
    assert chain_fingerprint(chain) == chain_fingerprint(list(chain))
    assert chain_fingerprint(chain) != chain_fingerprint(chain[::-1])
    assert chain_fingerprint(chain) != chain_fingerprint(chain[:1])


# --- hostnames (RFC 6125) ----------------------------------------------------------------------

HOSTNAME_CASES = [
    ("api.example.com", "api.example.com", True),
    ("API.Example.COM", "api.example.com", True),
    ("api.example.com.", "api.example.com", True),
    ("api.example.com", "api.example.com.", True),
    ("*.example.com", "api.example.com", True),
    ("*.example.com", "example.com", False),
    ("*.example.com", "a.b.example.com", False),
    ("*.example.com", ".example.com", False),
    ("f*.example.com", "foo.example.com", False),
    ("*oo.example.com", "foo.example.com", False),
    ("a.*.example.com", "a.b.example.com", False),
    ("*.*.example.com", "a.b.example.com", False),
    ("*.com", "example.com", False),
    ("*", "localhost", False),
    ("api.example.com", "api.example.org", False),
    ("", "api.example.com", False),
]


@pytest.mark.parametrize(("pattern", "host", "expected"), HOSTNAME_CASES,
                         ids=[f"{p or 'empty'}~{h}" for p, h, _ in HOSTNAME_CASES])
def test_hostname_matching(pattern: str, host: str, expected: bool):
    assert match_hostname(pattern, host) is expected


def _leaf(san: list[x509.GeneralName] | None, cn: str = "cn.example.com") -> x509.Certificate:
    key = ec_key()
    builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn))
               .public_key(key.public_key()).serial_number(1)
               .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1)))
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), False)
    return builder.sign(key, hashes.SHA256())


def test_an_ip_host_matches_an_ip_address_san_only():
    cert = _leaf([x509.DNSName("127.0.0.1"), x509.IPAddress(ipaddress.ip_address("::1"))])
    assert check_hostname(cert, "::1").passed
    assert check_hostname(cert, "[::1]").passed
    assert not check_hostname(cert, "127.0.0.1").passed


def test_the_cn_counts_only_without_a_subject_alt_name():
    assert check_hostname(_leaf(None), "cn.example.com").passed
    assert not check_hostname(_leaf([x509.DNSName("san.example.com")]),
                              "cn.example.com").passed


# --- per-platform severity, OpenSSL's errors, tls.no_legacy -------------------------------------

def test_tls_ats_fails_the_call_on_ios_only():
    violations = [Violation("tls.ats", "ATS validity: ..."), Violation("tls.expired", "...")]
    ios = for_platform(violations, "ios")
    android = for_platform(violations, "android")
    assert [v.level for v in ios] == [Severity.ERROR, Severity.ERROR]
    assert [v.fails_call for v in android] == [False, True]
    assert ios[0].err_msg == "request:fail ssl hand shake error"
    assert for_platform(violations, None)[0].level is Severity.WARNING


@pytest.mark.parametrize(("errno", "judged"), [
    (10, True), (9, True), (18, True), (19, True), (20, True), (21, True), (26, True),
    (62, True), (66, True), (68, True),
    # unhandled critical extension, revoked, path length: OpenSSL's refusal stands
    (34, False), (23, False), (25, False),
])
def test_which_openssl_verify_errors_the_rules_judge_themselves(errno: int, judged: bool):
    assert rules_judge(errno) is judged
    if judged:
        assert all(rule.startswith("tls.") for rule in OPENSSL_VERIFY_ERRORS[errno])


@pytest.mark.parametrize(("tls12", "tls13", "passed"), [
    (True, True, True), (True, False, True), (False, True, False), (False, False, None),
    (None, True, None),
])
def test_no_legacy_only_when_tls13_is_accepted_and_tls12_is_not(
        tls12: bool | None, tls13: bool | None, passed: bool | None):
    check = check_legacy(tls12, tls13)
    assert check.rule == "tls.no_legacy" and check.passed is passed


HANDSHAKE_MESSAGES = [
    ("Certificate verify failed: self-signed certificate", "tls.self_signed"),
    ("Certificate verify failed: self signed certificate", "tls.self_signed"),
    ("Certificate verify failed: self-signed certificate in certificate chain",
     "tls.untrusted"),
    ("Certificate verify failed: unable to get local issuer certificate",
     "tls.incomplete_chain"),
    ("Certificate verify failed: unable to verify the first certificate",
     "tls.incomplete_chain"),
    ("Certificate verify failed: certificate has expired", "tls.expired"),
    ("Certificate verify failed: certificate is not yet valid", "tls.not_yet_valid"),
    ("Certificate verify failed: hostname mismatch", "tls.hostname"),
    ("Certificate verify failed: unsupported certificate purpose", "tls.ats"),
    ("Certificate verify failed: EE certificate key too weak", "tls.ats"),
    ("Certificate verify failed: CA signature digest algorithm too weak", "tls.ats"),
    ("The remote server and mitmproxy cannot agree on a TLS version to use. You may need to "
     "adjust mitmproxy's tls_version_server_min option.", "tls.version"),
    ("OpenSSL Error([('SSL routines', '', 'unsupported protocol')])", "tls.version"),
    ("tlsv1 alert protocol version", "tls.version"),
    ("Certificate verify failed: unspecified certificate verification error", "tls.untrusted"),
    ("connection closed", None),
    ("The remote server does not speak TLS.", None),
    ("Connection killed.", None),
    ("[Errno 111] Connection refused", None),
]


@pytest.mark.parametrize(("message", "rule"), HANDSHAKE_MESSAGES,
                         ids=[m[:48] for m, _ in HANDSHAKE_MESSAGES])
def test_a_refused_handshake_is_classified_from_its_message(message: str, rule: str | None):
    assert classify_handshake_error(message) == rule


def test_every_classified_rule_is_a_tls_rule():
    assert {rule for _, rule in HANDSHAKE_ERRORS} <= set(TABLE)
    assert {rule for _, rule, _ in CHECKS} | {"tls.ats"} == {
        r for r in TABLE if r.startswith("tls.")}
