"""Trust roots and one-version handshakes, shared by `check-cert` and the TlsAudit addon."""

from __future__ import annotations

import socket
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from wxgate.tls_probe import PROBE_VERSIONS, load_roots, parse_pem_bundle, probe

from .tls_chains import Pki


def _pem(pki: Pki) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM)
                    for c in (pki.root.cert, pki.intermediate.cert))


def test_a_certificate_that_does_not_parse_is_skipped_not_the_bundle():
    pki = Pki()
    broken = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
    certs = parse_pem_bundle(broken + _pem(pki))
    assert certs == [pki.root.cert, pki.intermediate.cert]


def test_roots_named_twice_are_loaded_once(tmp_path: Path):
    pki = Pki()
    first, second = tmp_path / "a.pem", tmp_path / "b.pem"
    first.write_bytes(_pem(pki))
    second.write_bytes(pki.root.cert.public_bytes(serialization.Encoding.PEM))
    assert load_roots([first, second]) == [pki.root.cert, pki.intermediate.cert]


def test_a_server_that_speaks_no_tls_refuses_each_version_with_a_reason():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        found = probe("127.0.0.1", port, None, PROBE_VERSIONS[-1], timeout=0.5)
    assert not found.accepted and found.error

