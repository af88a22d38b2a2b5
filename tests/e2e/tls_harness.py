"""Real local TLS servers, one per certificate/TLS defect, and a proxy that judges them.

Every server is a `harness.Upstream` on 127.0.0.1:0 whose Python ssl context sends a
chain built in the test (`tests.tls_chains`) exactly as written, under its own name
`<case>.tls.example.com`; the proxy's `resolve:` maps each name to its port.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..tls_chains import EXPECTED_ATS, EXPECTED_RULE, Pki
from .harness import APPID, REFERER, Proxy, Upstream, start_proxy

IOS_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.50 MiniProgramEnv/iOS")
ANDROID_UA = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like "
              "Gecko) Chrome/120.0 Mobile Safari/537.36 MicroMessenger/8.0.50 "
              "MiniProgramEnv/android")
HEADERS = {
    "ios": {"Referer": REFERER, "User-Agent": IOS_UA},
    "android": {"Referer": REFERER, "User-Agent": ANDROID_UA},
}
V = ssl.TLSVersion


@dataclass(frozen=True)
class Case:
    """One server: which chain it sends, how it is limited, and the one rule it breaks."""

    name: str
    defect: str
    rule: str | None
    ats_rule: str | None = None
    versions: tuple[ssl.TLSVersion, ssl.TLSVersion] | None = None
    ciphers: str | None = None
    # Answers a ClientHello above its versions with a handshake_failure alert instead of
    # negotiating down (version intolerance, as old TLS stacks do).
    intolerant: bool = False

    @property
    def host(self) -> str:
        return f"{self.name.replace('_', '-')}.tls.example.com"

    @property
    def blocks_everyone(self) -> bool:
        return self.rule is not None and self.rule not in ("tls.ats", "tls.no_legacy")


CASES: tuple[Case, ...] = (
    *(Case(d, d, EXPECTED_RULE[d], EXPECTED_ATS.get(d)) for d in (
        "good", "leaf_only", "self_signed", "untrusted", "expired", "not_yet_valid",
        "wrong_host", "rsa1024", "sha1", "validity_900", "no_san", "client_auth_eku",
        "wosign")),
    # SECLEVEL=0 lets this machine's OpenSSL serve TLS 1.1; mitmproxy refuses it itself.
    Case("tls11", "good", "tls.version", versions=(V.TLSv1_1, V.TLSv1_1)),
    # TLS 1.1 only, and a bare handshake_failure alert to anything newer: the message
    # names no version, so only a probe per version tells why the handshake failed.
    Case("tls11_intolerant", "good", "tls.version", versions=(V.TLSv1_1, V.TLSv1_1),
         intolerant=True),
    # RSA key exchange only: a TLS 1.2 cipher without forward secrecy.
    Case("no_fs", "rsa_good", "tls.ats", "forward_secrecy", versions=(V.TLSv1_2, V.TLSv1_2),
         ciphers="AES128-GCM-SHA256:AES256-GCM-SHA384"),
    Case("tls13_only", "good", "tls.no_legacy", versions=(V.TLSv1_3, V.TLSv1_3)),
)
CASE_IDS = [c.name for c in CASES]
HANDSHAKE_FAILURE_ALERT = bytes([21, 3, 1, 0, 2, 2, 40])  # alert record: fatal, handshake_failure


class VersionIntolerant:
    """Wraps a server context: a ClientHello whose version field is above TLS 1.1 (every
    TLS 1.2/1.3 client's) gets a handshake_failure alert and a closed connection; a TLS
    1.1 or older one is served by the context."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context

    def wrap_socket(self, sock: socket.socket, **kwargs: Any) -> socket.socket:
        sock.settimeout(5)
        try:
            # record header (5 bytes), handshake type and length (4), client_version (2)
            head = sock.recv(11, socket.MSG_PEEK | socket.MSG_WAITALL)
        except OSError:
            head = b""
        sock.settimeout(None)
        if len(head) == 11 and head[0] == 22 and head[9:11] > b"\x03\x02":
            sock.sendall(HANDSHAKE_FAILURE_ALERT)
            sock.close()
            return sock
        return self.context.wrap_socket(sock, **kwargs)


@dataclass
class Lab:
    pki: Pki
    root_file: Path
    servers: dict[str, Upstream]

    def port(self, case: Case) -> int:
        return self.servers[case.name].port

    def resolve(self) -> dict[str, str]:
        return {c.host: f"127.0.0.1:{self.port(c)}" for c in CASES}

    def close(self) -> None:
        for server in self.servers.values():
            server.close()


def start_lab(directory: Path) -> Lab:
    pki = Pki()
    servers = {}
    for case in CASES:
        chain = pki.serve(case.host, case.defect)
        context = chain.server_context(directory / case.name, versions=case.versions,
                                       ciphers=case.ciphers)
        servers[case.name] = Upstream(VersionIntolerant(context) if case.intolerant  # type: ignore[arg-type]
                                      else context)
    return Lab(pki, pki.root_pem(directory / "test-root.pem"), servers)


def tls_config(lab: Lab, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "mode": "enforce",
        "scope": "miniprogram",
        "block_with": "fail",
        "resolve": lab.resolve(),
        "apps": [{
            "appid": APPID,
            "version": "0",
            "domains": {"request": [f"https://{c.host}" for c in CASES]},
        }],
    }
    config.update(overrides)
    return config


def start_tls_proxy(workdir: Path, lab: Lab, extra: list[str] | None = None,
                    **overrides: Any) -> Proxy:
    return start_proxy(workdir, tls_config(lab, **overrides), lab.root_file, extra)
