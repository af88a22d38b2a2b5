"""This machine's own network addresses, read without sending anything (banner, exposure)."""

from __future__ import annotations

import socket
import struct

SIOCGIFADDR = 0x8915


def lan_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses, found without sending anything.

    Asks each interface (Linux ioctl; the hostname often resolves only to 127.0.1.1),
    then the hostname's addresses.
    """
    found: set[str] = set()
    try:
        import fcntl

        for _, name in socket.if_nameindex():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    packed = fcntl.ioctl(probe.fileno(), SIOCGIFADDR,
                                         struct.pack("256s", name.encode()[:15]))
                except OSError:
                    continue  # interface without an IPv4 address
                found.add(socket.inet_ntoa(packed[20:24]))
    except (ImportError, OSError):
        pass
    try:
        for *_, sockaddr in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.add(str(sockaddr[0]))
    except OSError:
        pass
    return sorted(a for a in found if not a.startswith("127."))
