"""Classify the host of a URL as a domain name, an IP address (in any spelling) or a loopback name.

The real client refuses IP hosts and loopback names, and a browser-grade URL parser accepts many
spellings of both (``0x7f000001``, ``127.1``, ``［::1］``, ``%31%32%37.0.0.1`` ...).  The one
property that matters here: no spelling that a client would turn into an IP address or a loopback
name may come out as ``HostKind.NAME``.  When in doubt this module says IP or LOCALHOST, because
both are errors anyway and a NAME that should not be one could match the whitelist.

Pure: standard library only, no I/O, no DNS.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from encodings import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class HostKind(enum.Enum):
    NAME = "name"
    IP = "ip"
    LOCALHOST = "localhost"


@dataclass(frozen=True)
class HostInfo:
    raw: str
    name: str
    kind: HostKind
    ip: IPAddress | None
    trailing_dot: bool

    def describe(self) -> str:
        # The raw spelling is what the developer must search their code for, so show it whenever
        # it differs from the normalized form.
        if self.kind is HostKind.IP:
            if self.ip is None:
                return f"unparsable IP address {self.raw!r}"
            text = f"IP address {self.ip}"
            if isinstance(self.ip, ipaddress.IPv6Address) and self.ip.ipv4_mapped is not None:
                text += f" (IPv4-mapped {self.ip.ipv4_mapped})"
            if self.raw.strip("[]").lower() != str(self.ip):
                text += f" (written as {self.raw!r})"
            return text
        if not self.name:
            return "empty host"
        label = "localhost name" if self.kind is HostKind.LOCALHOST else "domain name"
        text = f"{label} {self.name!r}"
        if self.raw != self.name:
            text += f" (written as {self.raw!r})"
        return text


# /etc/hosts of the common distributions maps these to 127.0.0.1 or ::1.
_LOOPBACK_NAMES = frozenset({
    "localhost", "localhost.localdomain", "localhost4", "localhost4.localdomain4",
    "localhost6", "localhost6.localdomain6", "ip6-localhost", "ip6-loopback",
})

# IDNA treats the ideographic and full-width full stops as label separators.
_DOTS = re.compile("[.\u3002\uff0e\uff61]")
_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")
# WHATWG "ends in a number": the last label is decimal digits, or 0x followed by hex digits.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")
_TAB_OR_NEWLINE = re.compile("[\t\n\r]")
_C0_AND_SPACE = "".join(chr(i) for i in range(0x21))
_LAN_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "fc00::/7",
              "fe80::/10")
)


def idna_name(name: str) -> str:
    """Lowercase ``name`` and encode every IDN label as punycode; one trailing dot is kept.

    Raises ValueError (empty label, label too long, prohibited code point ...).
    """
    labels = _DOTS.split(name.lower())
    trailing = len(labels) > 1 and labels[-1] == ""
    if trailing:
        labels.pop()
    out = []
    for label in labels:
        try:
            out.append(idna.ToASCII(label).decode("ascii"))
        except UnicodeError as exc:
            raise ValueError(f"cannot encode {name!r} as an IDNA name: {exc}") from exc
    return ".".join(out) + ("." if trailing else "")


def _ipv4_number(part: str) -> int | None:
    if not _NUMERIC_LABEL.fullmatch(part):
        return None
    try:
        if part[:2] in ("0x", "0X"):
            return int(part[2:] or "0", 16)
        if len(part) > 1 and part[0] == "0":
            return int(part[1:], 8)
        return int(part)
    except ValueError:  # an 8 or 9 in an octal part, or a decimal beyond int's digit limit
        return None


def parse_ipv4_loose(host: str) -> ipaddress.IPv4Address | None:
    """The WHATWG URL IPv4 parser: 1-4 parts, each decimal, 0-octal or 0x-hex, the last filling
    the remaining bytes.  ``None`` on failure.  No percent-decoding or Unicode mapping is done
    here (classify_host does that first); only ASCII digits count."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if len(parts) > 4:
        return None
    numbers = []
    for part in parts:
        number = _ipv4_number(part)
        if number is None:
            return None
        numbers.append(number)
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        return None
    value = numbers[-1]
    for i, number in enumerate(numbers[:-1]):
        value += number << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def is_lan_ip(ip: IPAddress) -> bool:
    """Private, unique-local or link-local; the v4 inside an IPv4-mapped v6 counts.  Loopback
    is not LAN (it has its own rule)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in _LAN_NETWORKS)


def _percent_decode(text: str) -> str:
    # Clients decode once.  Decoding until nothing changes also catches double-encoded
    # spellings; no DNS name contains '%', so no real name is altered.
    for _ in range(8):
        if "%" not in text:
            break
        data = _PERCENT.sub(lambda m: bytes([int(m.group(1), 16)]), text.encode("utf-8", "replace"))
        try:
            decoded = data.decode("utf-8")
        except UnicodeDecodeError:  # not text: a client rejects it, leave it as a NAME
            break
        if decoded == text:
            break
        text = decoded
    return text


def _normalize(host: str) -> str:
    # The order follows the URL parser: percent-decode, then Unicode-map (NFKC turns full-width
    # digits, dots, colons and brackets into ASCII).  Repeated because NFKC can produce new
    # percent signs ("％３１" -> "%31"), which a sloppy decoder downstream would still decode.
    text = host
    for _ in range(4):
        mapped = unicodedata.normalize("NFKC", _percent_decode(text))
        if mapped == text:
            break
        text = mapped
    text = _TAB_OR_NEWLINE.sub("", text).strip(_C0_AND_SPACE)
    return _DOTS.sub(".", text).lower()


def _nameprep(label: str) -> str:
    # Nameprep drops characters such as soft hyphens and zero-width spaces, so "local\xadhost"
    # reaches the network as "localhost".  Unlike ToASCII it has no length limits, which URL
    # parsers do not enforce either.
    try:
        return idna.nameprep(label)
    except UnicodeError:
        return label


def _parse_ipv6(text: str) -> IPAddress | None:
    address = text.split("%", 1)[0]  # the zone id does not change which address it is
    try:
        return ipaddress.IPv6Address(address)
    except ValueError:
        # "[127.0.0.1]" is refused by clients, but say which address was meant.
        return parse_ipv4_loose(address)


def _is_numeric(name: str) -> bool:
    return bool(_NUMERIC_LABEL.fullmatch(name.rsplit(".", 1)[-1]))


def _is_loopback_name(name: str) -> bool:
    return name in _LOOPBACK_NAMES or name.endswith(".localhost")


# Every judged call classifies its host up to three times (interface, URL rules, resolve), and
# IDNA nameprep dominated the per-call cost of the proxy; a client talks to a handful of hosts.
# HostInfo is frozen, so sharing one between calls is safe; the bound caps a hostile mix.
@functools.lru_cache(maxsize=4096)
def classify_host(host: str) -> HostInfo:
    """Classify ``host`` (no port, brackets allowed).  Never raises."""
    text = _normalize(host)
    trailing_dot = text.endswith(".")
    if ":" in text or text.startswith("[") or text.endswith("]"):
        name = text.strip("[].")
        return HostInfo(host, name, HostKind.IP, _parse_ipv6(name), trailing_dot)
    plain = text.rstrip(".")
    if not plain:
        return HostInfo(host, "", HostKind.NAME, None, trailing_dot)
    try:
        name = idna_name(plain)
    except ValueError:
        name = plain  # callers fail it as not listed
    mapped = ".".join(_nameprep(label) for label in plain.split("."))
    forms = (plain, mapped)
    if any(_is_numeric(form) for form in forms):
        ip = parse_ipv4_loose(mapped)
        return HostInfo(host, name, HostKind.IP, ip, trailing_dot)
    kind = HostKind.LOCALHOST if any(map(_is_loopback_name, forms)) else HostKind.NAME
    return HostInfo(host, name, kind, None, trailing_dot)


def is_ip_literal(host: str) -> bool:
    """A plain IP address as a socket API takes it (no SNI may be sent for one)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
