"""Who may use the proxy and where it may carry them (SPEC §8): pure decisions over addresses.

The proxy listens on every interface of a laptop on a shared network, so a client's address
decides whether it may use the proxy at all, and a client that is not the machine itself
may never be carried to the machine's own services.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from .hosts import HostKind, IPAddress, classify_host

# The proxy's own TCP peer counts as loopback only at these addresses: another 127.x source
# stands in for a LAN caller in tests, and nothing a client sends can make it loopback.
LOOPBACK_PEERS = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def peer_ip(address: str) -> IPAddress | None:
    """The IP of a peer address string (IPv4-mapped IPv6 unwrapped); None when unparsable."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_loopback_peer(address: str | None) -> bool:
    return bool(address) and address in LOOPBACK_PEERS


def client_allowed(address: str, networks: Iterable[Network]) -> bool:
    """A client may use the proxy when its address lies in one of `clients:`."""
    ip = peer_ip(address)
    return ip is not None and any(ip.version == n.version and ip in n for n in networks)


def is_local_ip(ip: IPAddress, own: Iterable[IPAddress] = ()) -> bool:
    """An address on this machine: loopback, link-local, unspecified, or one of its own."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip in set(own)


def local_destination(host: str, own: Iterable[IPAddress] = ()) -> str | None:
    """Why `host` (any spelling) is this machine, or None when it is not known to be.

    Names are judged by spelling only (localhost and *.localhost); the caller checks what
    a name resolves to.
    """
    info = classify_host(host)
    if info.kind is HostKind.LOCALHOST:
        return f"{info.name} is a loopback name"
    if info.kind is HostKind.IP:
        if info.ip is None:
            return f"{host!r} is an unparsable IP address"
        if is_local_ip(info.ip, own):
            return f"{info.ip} is an address of this machine"
    return None


def host_mismatch(connected: str, named: str | None, sni: str | None) -> str | None:
    """Why the host the proxy would connect to is not the host the request names, or None.

    `named` is the Host header or HTTP/2 :authority (port stripped), `sni` the TLS server
    name the client sent; either may be absent. Compared as the client's URL parser would
    see them, so `API.Example.com.` and `api.example.com` are one host only when they
    normalise alike.
    """
    target = classify_host(connected).name
    for source, value in (("the Host header", named), ("the TLS SNI", sni)):
        if value and classify_host(value).name != target:
            return (f"the proxy would connect to {connected} but {source} names {value}: "
                    "judged as neither, never contacted")
    return None

