"""Trust roots and one-version TLS handshakes: what the `check-cert` command and the
TlsAudit addon both need to look at a server the way a phone does.

pyOpenSSL (a mitmproxy dependency) does the handshakes: Python's own ssl module returns the
chain as sent only from 3.13 on, and one library for every Python keeps the probes alike.
"""

from __future__ import annotations

import re
import select
import socket
import ssl
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL

from .policy.hosts import is_ip_literal

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


def _ssl_error(exc: SSL.Error) -> str:
    """OpenSSL's error queue as one phrase ("tlsv1 alert protocol version")."""
    args = exc.args[0] if exc.args else None
    if isinstance(args, list) and args and isinstance(args[-1], tuple):
        return str(args[-1][-1])
    return str(exc) or type(exc).__name__


def peer_chain(conn: SSL.Connection) -> list[x509.Certificate]:
    """The chain the server sent, leaf first; available from the verify callback on."""
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
                       peer_chain(conn))
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
