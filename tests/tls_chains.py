"""Certificate chains with one chosen defect each, built with `cryptography` in the test.

`Pki` holds one trusted test root and one intermediate; `Pki.serve(host, defect)` gives
the chain a server sends (leaf first) and its key, for the pure tests and for real local
TLS servers alike. Keys are EC P-256 unless a defect needs RSA (RSA key exchange, a weak
RSA key), because RSA key generation is slow.
"""

from __future__ import annotations

import datetime as dt
import ssl
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)

# One name per defect; a real server (and the pure tests) serve the chain under this name.
DEFECTS = (
    "good", "leaf_only", "self_signed", "untrusted", "expired", "not_yet_valid",
    "wrong_host", "rsa1024", "sha1", "validity_900", "no_san", "client_auth_eku", "wosign",
    "rsa_good",
)
# The rule each defect must yield, and nothing else ("good"/"rsa_good" yield nothing).
EXPECTED_RULE: dict[str, str | None] = {
    "good": None,
    "rsa_good": None,
    "leaf_only": "tls.incomplete_chain",
    "self_signed": "tls.self_signed",
    "untrusted": "tls.untrusted",
    "expired": "tls.expired",
    "not_yet_valid": "tls.not_yet_valid",
    "wrong_host": "tls.hostname",
    "rsa1024": "tls.ats",
    "sha1": "tls.ats",
    "validity_900": "tls.ats",
    "no_san": "tls.ats",
    "client_auth_eku": "tls.ats",
    "wosign": "tls.distrusted_issuer",
}
# Which ATS rule the tls.ats defects break (as named in the violation's detail).
EXPECTED_ATS: dict[str, str] = {
    "rsa1024": "key_size",
    "sha1": "signature",
    "validity_900": "validity",
    "no_san": "san",
    "client_auth_eku": "eku",
}

PrivateKey = CertificateIssuerPrivateKeyTypes


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def name(cn: str, org: str = "wxgate tests") -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


@dataclass
class Issued:
    cert: x509.Certificate
    key: PrivateKey


def issue(
    subject: x509.Name, key: PrivateKey, issuer: Issued | None, *, ca: bool,
    not_before: dt.datetime | None = None, days: int = 90,
    san: list[str] | None = None, eku: list[x509.ObjectIdentifier] | None = None,
    digest: hashes.HashAlgorithm | None = None,
) -> Issued:
    """One certificate; `issuer=None` makes it self-signed."""
    signer_key = issuer.key if issuer else key
    issuer_name = issuer.cert.subject if issuer else subject
    start = not_before or NOW - DAY
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer.key.public_key()),  # type: ignore[arg-type]
            critical=False)
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in san]), critical=False)
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    cert = builder.sign(signer_key, digest or hashes.SHA256())  # type: ignore[arg-type]
    return Issued(cert, key)


_SHA256_RSA = bytes.fromhex("06092a864886f70d01010b")
_SHA1_RSA = bytes.fromhex("06092a864886f70d010105")


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def resign_sha1(cert: x509.Certificate, issuer_key: rsa.RSAPrivateKey) -> x509.Certificate:
    """The same certificate, signed with sha1WithRSAEncryption by `issuer_key`."""
    tbs = cert.tbs_certificate_bytes
    assert tbs.count(_SHA256_RSA) == 1, "expected one sha256WithRSAEncryption in the TBS"
    tbs = tbs.replace(_SHA256_RSA, _SHA1_RSA)
    signature = issuer_key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
    algorithm = _der(0x30, _SHA1_RSA + b"\x05\x00")
    der = _der(0x30, tbs + algorithm + _der(0x03, b"\x00" + signature))
    return x509.load_der_x509_certificate(der)


@dataclass
class ServerChain:
    """What one server sends: its chain (leaf first, exactly as sent) and the leaf's key."""

    host: str
    defect: str
    sent: list[x509.Certificate]
    key: PrivateKey
    files: dict[str, Path] = field(default_factory=dict)

    def write(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        chain_file = directory / f"{self.defect}-chain.pem"
        key_file = directory / f"{self.defect}-key.pem"
        chain_file.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                                        for c in self.sent))
        key_file.write_bytes(self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        return chain_file, key_file

    def server_context(
        self, directory: Path, *, versions: tuple[ssl.TLSVersion, ssl.TLSVersion] | None = None,
        ciphers: str | None = None,
    ) -> ssl.SSLContext:
        """A Python ssl server context that sends this chain, optionally limited in
        versions or TLS 1.2 ciphers. SECLEVEL=0 so that weak test keys and TLS 1.1 load."""
        chain_file, key_file = self.write(directory)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.set_ciphers((ciphers or "DEFAULT") + ":@SECLEVEL=0")
        if versions:
            with warnings.catch_warnings():
                # Serving TLS 1.1 is deprecated, and the point of the server that does.
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.minimum_version, ctx.maximum_version = versions
        ctx.load_cert_chain(str(chain_file), str(key_file))
        return ctx


class Pki:
    """A trusted test root, an intermediate under it, and leaves with any defect."""

    def __init__(self) -> None:
        self.root = issue(name("wxgate Test Root"), ec_key(), None, ca=True, days=3650)
        self.intermediate = issue(name("wxgate Test Intermediate"), ec_key(), self.root,
                                  ca=True, days=1825)
        self._rsa_weak: rsa.RSAPrivateKey | None = None
        self._rsa: rsa.RSAPrivateKey | None = None

    @property
    def roots(self) -> list[x509.Certificate]:
        return [self.root.cert]

    def root_pem(self, path: Path) -> Path:
        path.write_bytes(self.root.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def rsa(self, bits: int) -> rsa.RSAPrivateKey:
        # One key of each size per Pki: generating RSA keys is the slow part.
        if bits == 1024:
            self._rsa_weak = self._rsa_weak or rsa_key(1024)
            return self._rsa_weak
        self._rsa = self._rsa or rsa_key(2048)
        return self._rsa

    def serve(self, host: str, defect: str = "good") -> ServerChain:
        if defect not in DEFECTS:
            raise ValueError(f"unknown defect {defect!r}")
        server_auth = [ExtendedKeyUsageOID.SERVER_AUTH]
        key: PrivateKey = ec_key()
        issuer = self.intermediate
        kwargs: dict[str, object] = {"san": [host], "eku": server_auth}
        extra: list[x509.Certificate] = [self.intermediate.cert]
        subject = name(host)
        if defect == "rsa_good":
            key = self.rsa(2048)
        elif defect == "leaf_only":
            extra = []
        elif defect == "self_signed":
            leaf = issue(subject, key, None, ca=False, san=[host], eku=server_auth)
            return ServerChain(host, defect, [leaf.cert], key)
        elif defect == "untrusted":
            stranger = issue(name("Stranger Root"), ec_key(), None, ca=True, days=3650)
            other = issue(name("Stranger Intermediate"), ec_key(), stranger, ca=True)
            issuer, extra = other, [other.cert]
        elif defect == "expired":
            kwargs["not_before"], kwargs["days"] = NOW - 100 * DAY, 30
        elif defect == "not_yet_valid":
            kwargs["not_before"] = NOW + 10 * DAY
        elif defect == "wrong_host":
            kwargs["san"], subject = ["other.example.org"], name("other.example.org")
        elif defect == "rsa1024":
            key = self.rsa(1024)
        elif defect == "sha1":
            # cryptography no longer signs with SHA-1: sign with an RSA intermediate,
            # then re-sign the leaf's TBS with SHA-1 (the OIDs are the same length).
            rsa_ca = issue(name("wxgate Test RSA Intermediate"), self.rsa(2048), self.root,
                           ca=True, days=1825)
            leaf = issue(subject, key, rsa_ca, ca=False, san=[host], eku=server_auth)
            weak = resign_sha1(leaf.cert, self.rsa(2048))
            return ServerChain(host, defect, [weak, rsa_ca.cert], key)
        elif defect == "validity_900":
            kwargs["days"] = 900
        elif defect == "no_san":
            kwargs["san"] = None
        elif defect == "client_auth_eku":
            kwargs["eku"] = [ExtendedKeyUsageOID.CLIENT_AUTH]
        elif defect == "wosign":
            wosign = issue(name("WoSign CA Free SSL Certificate G2", "WoSign CA Limited"),
                           ec_key(), self.root, ca=True)
            issuer, extra = wosign, [wosign.cert]
        leaf = issue(subject, key, issuer, ca=False, **kwargs)  # type: ignore[arg-type]
        return ServerChain(host, defect, [leaf.cert, *extra], key)
