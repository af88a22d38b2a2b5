"""Tests for addons.policy.hosts: no spelling of an IP address or loopback name is a NAME."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from wxgate.policy.hosts import (
    HostInfo,
    HostKind,
    classify_host,
    idna_name,
    is_lan_ip,
    parse_ipv4_loose,
)

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address
LOOPBACK_V4 = V4("127.0.0.1")

# --------------------------------------------------------------------------- IP spellings

IP_CASES = [
    pytest.param("127.0.0.1", LOOPBACK_V4, id="dotted-decimal"),
    pytest.param("2130706433", LOOPBACK_V4, id="single-decimal"),
    pytest.param("0x7f000001", LOOPBACK_V4, id="single-hex"),
    pytest.param("0X7F000001", LOOPBACK_V4, id="single-hex-upper"),
    pytest.param("0X7F.0.0.1", LOOPBACK_V4, id="hex-first-part-upper-x"),
    pytest.param("0x7f.0x0.0x0.0x1", LOOPBACK_V4, id="hex-every-part"),
    pytest.param("0177.0.0.1", LOOPBACK_V4, id="octal-first-part"),
    pytest.param("0177.00.000.01", LOOPBACK_V4, id="octal-every-part"),
    pytest.param("017700000001", LOOPBACK_V4, id="single-octal"),
    pytest.param("127.1", LOOPBACK_V4, id="two-part-short"),
    pytest.param("127.0.1", LOOPBACK_V4, id="three-part-short"),
    pytest.param("10.1", V4("10.0.0.1"), id="two-part-private"),
    pytest.param("0x7f.1", LOOPBACK_V4, id="mixed-hex-decimal"),
    pytest.param("0x7f.0.0x0.01", LOOPBACK_V4, id="mixed-hex-octal-decimal"),
    pytest.param("127.0.0.1.", LOOPBACK_V4, id="trailing-dot"),
    pytest.param("127.0.0.1..", LOOPBACK_V4, id="two-trailing-dots"),
    pytest.param("0", V4("0.0.0.0"), id="zero"),
    pytest.param("0x", V4("0.0.0.0"), id="bare-0x-is-zero"),
    pytest.param("0x0000000000000000000000007f000001", LOOPBACK_V4, id="hex-long-leading-zeros"),
    pytest.param("4294967295", V4("255.255.255.255"), id="single-decimal-max"),
    pytest.param("127。0。0。1", LOOPBACK_V4, id="ideographic-full-stops"),
    pytest.param("127．0．0．1", LOOPBACK_V4, id="fullwidth-full-stops"),
    pytest.param("127｡0｡0｡1", LOOPBACK_V4, id="halfwidth-ideographic-full-stops"),
    pytest.param("１２７.０.０.１", LOOPBACK_V4, id="fullwidth-digits"),
    pytest.param("０ｘ７Ｆ０００００１", LOOPBACK_V4, id="fullwidth-hex"),
    pytest.param("%31%32%37.0.0.1", LOOPBACK_V4, id="percent-encoded-digits"),
    pytest.param("127%2E0%2e0%2E1", LOOPBACK_V4, id="percent-encoded-dots"),
    pytest.param("%2531%2532%2537.0.0.1", LOOPBACK_V4, id="double-percent-encoded"),
    pytest.param("%EF%BC%91%EF%BC%92%EF%BC%97.0.0.1", LOOPBACK_V4, id="percent-encoded-fullwidth"),
    pytest.param("127.0.0.％３１", LOOPBACK_V4, id="fullwidth-percent-escape"),
    pytest.param("127.0.0.\u2488", LOOPBACK_V4, id="digit-one-full-stop-compat-char"),
    pytest.param("127.0.0.1\u00ad", LOOPBACK_V4, id="soft-hyphen-dropped-by-nameprep"),
    pytest.param("12\u200b7.0.0.1", LOOPBACK_V4, id="zero-width-space-dropped"),
    pytest.param(" 127.0.0.1\t", LOOPBACK_V4, id="surrounding-whitespace"),
    pytest.param("127.0.0.1\n", LOOPBACK_V4, id="newline"),
    pytest.param("192.168.1.1", V4("192.168.1.1"), id="private-dotted"),
    pytest.param("[::1]", V6("::1"), id="v6-loopback-bracketed"),
    pytest.param("::1", V6("::1"), id="v6-loopback-bare"),
    pytest.param("[0:0:0:0:0:0:0:1]", V6("::1"), id="v6-exploded"),
    pytest.param("[0000:0000:0000:0000:0000:0000:0000:0001]", V6("::1"), id="v6-exploded-zeros"),
    pytest.param("[::ffff:127.0.0.1]", V6("::ffff:127.0.0.1"), id="v6-mapped-dotted"),
    pytest.param("::ffff:7f00:1", V6("::ffff:127.0.0.1"), id="v6-mapped-hex"),
    pytest.param("[::FFFF:7F00:1]", V6("::ffff:127.0.0.1"), id="v6-mapped-upper"),
    pytest.param("[fe80::1%25eth0]", V6("fe80::1"), id="v6-zone-id-encoded"),
    pytest.param("fe80::1%eth0", V6("fe80::1"), id="v6-zone-id-raw"),
    pytest.param("[2001:DB8::1]", V6("2001:db8::1"), id="v6-uppercase"),
    pytest.param("［::1］", V6("::1"), id="v6-fullwidth-brackets"),
    pytest.param("[：：１]", V6("::1"), id="v6-fullwidth-colons"),
    pytest.param("%5B::1%5D", V6("::1"), id="v6-percent-encoded-brackets"),
    pytest.param("[%3A%3A1]", V6("::1"), id="v6-percent-encoded-colons"),
    pytest.param("[127.0.0.1]", LOOPBACK_V4, id="v4-in-brackets"),
]


@pytest.mark.parametrize(("host", "address"), IP_CASES)
def test_every_ip_spelling_is_kind_ip_with_the_address(host: str, address: object) -> None:
    """Each IP spelling a URL parser accepts is IP and .ip is the address it means."""
    info = classify_host(host)
    assert info.kind is HostKind.IP
    assert info.ip == address


INVALID_IP_CASES = [
    pytest.param("999.999.999.999", id="parts-out-of-range"),
    pytest.param("1.2.3.4.5", id="five-parts"),
    pytest.param("256.0.0.1", id="first-part-256"),
    pytest.param("1.2.3.256", id="last-part-256"),
    pytest.param("4294967296", id="single-number-too-big"),
    pytest.param("0x100000000", id="single-hex-too-big"),
    pytest.param("9" * 5000, id="huge-decimal"),
    pytest.param("08.0.0.1", id="bad-octal-digit"),
    pytest.param("127..0.1", id="empty-middle-label"),
    pytest.param(".127.0.0.1", id="leading-dot"),
    pytest.param("example.com.1", id="name-ending-in-number"),
    pytest.param("foo.0x1f", id="name-ending-in-hex"),
    pytest.param("foo.0x", id="name-ending-in-bare-0x"),
    pytest.param("a" * 64 + ".1", id="overlong-label-ending-in-number"),
    pytest.param("[example.com]", id="bracketed-name"),
    pytest.param("[::1", id="unclosed-bracket"),
    pytest.param("1:2:3:4:5:6:7:8:9", id="too-many-v6-groups"),
    pytest.param("example.com:443", id="host-with-port-is-not-a-name"),
]


@pytest.mark.parametrize("host", INVALID_IP_CASES)
def test_not_quite_valid_numeric_hosts_are_still_ip(host: str) -> None:
    """A host that ends in a number, has ':' or brackets is an IP attempt, valid or not."""
    assert classify_host(host).kind is HostKind.IP


def test_out_of_range_ip_has_no_address() -> None:
    """ip is None when the IP attempt does not parse."""
    assert classify_host("999.999.999.999").ip is None
    assert classify_host("[::g]").ip is None


def test_mapped_v4_keeps_the_ipv6_address() -> None:
    """An IPv4-mapped IPv6 host stays an IPv6Address; its v4 is reachable via ipv4_mapped."""
    ip = classify_host("[::ffff:10.0.0.1]").ip
    assert isinstance(ip, V6)
    assert ip.ipv4_mapped == V4("10.0.0.1")


def test_ip_name_is_normalized_spelling() -> None:
    """name keeps the (normalized) spelling; brackets, zone escapes and trailing dots go."""
    assert classify_host("0X7F.0.0.1.").name == "0x7f.0.0.1"
    assert classify_host("[FE80::1%25ETH0]").name == "fe80::1%eth0"
    assert classify_host("127。0。0。1。").trailing_dot is True


# --------------------------------------------------------------------------- localhost

LOCALHOST_CASES = [
    pytest.param("localhost", "localhost", id="plain"),
    pytest.param("LOCALHOST", "localhost", id="upper"),
    pytest.param("LocalHost", "localhost", id="mixed-case"),
    pytest.param("localhost.", "localhost", id="trailing-dot"),
    pytest.param("localhost..", "localhost", id="two-trailing-dots"),
    pytest.param("foo.localhost", "foo.localhost", id="subdomain"),
    pytest.param("a.b.c.localhost", "a.b.c.localhost", id="deep-subdomain"),
    pytest.param("API.Foo.LOCALHOST.", "api.foo.localhost", id="subdomain-upper-trailing-dot"),
    pytest.param("1.localhost", "1.localhost", id="numeric-subdomain"),
    pytest.param("localhost.localdomain", "localhost.localdomain", id="localdomain"),
    pytest.param("localhost4", "localhost4", id="localhost4"),
    pytest.param("localhost4.localdomain4", "localhost4.localdomain4", id="localdomain4"),
    pytest.param("localhost6", "localhost6", id="localhost6"),
    pytest.param("localhost6.localdomain6", "localhost6.localdomain6", id="localdomain6"),
    pytest.param("ip6-localhost", "ip6-localhost", id="ip6-localhost"),
    pytest.param("IP6-LOOPBACK", "ip6-loopback", id="ip6-loopback"),
    pytest.param("ｌｏｃａｌｈｏｓｔ", "localhost", id="fullwidth-letters"),
    pytest.param("foo。localhost", "foo.localhost", id="ideographic-dot"),
    pytest.param("%6c%6f%63%61%6c%68%6f%73%74", "localhost", id="percent-encoded"),
    pytest.param("local\u00adhost", "localhost", id="soft-hyphen"),
    pytest.param("locaLHoſt", "localhost", id="long-s"),
    pytest.param("ＬＯＣＡＬＨＯＳＴ。", "localhost", id="fullwidth-upper-ideographic-dot"),
]


@pytest.mark.parametrize(("host", "name"), LOCALHOST_CASES)
def test_localhost_spellings_are_kind_localhost(host: str, name: str) -> None:
    """localhost, *.localhost and the /etc/hosts loopback names in every spelling: LOCALHOST."""
    info = classify_host(host)
    assert info.kind is HostKind.LOCALHOST
    assert info.name == name
    assert info.ip is None


# --------------------------------------------------------------------------- real names

NAME_CASES = [
    pytest.param("api.example.com", "api.example.com", False, id="plain"),
    pytest.param("API.Example.COM.", "api.example.com", True, id="upper-trailing-dot"),
    pytest.param("0x.example.com", "0x.example.com", False, id="hex-looking-first-label"),
    pytest.param("1.example.com", "1.example.com", False, id="numeric-first-label"),
    pytest.param("127.0.0.1.example.com", "127.0.0.1.example.com", False, id="ip-as-subdomain"),
    pytest.param("example.123abc", "example.123abc", False, id="alnum-last-label"),
    pytest.param("foo.0xg", "foo.0xg", False, id="not-hex-last-label"),
    pytest.param("localhost.example.com", "localhost.example.com", False, id="localhost-label"),
    pytest.param("notlocalhost", "notlocalhost", False, id="localhost-suffix-no-dot"),
    pytest.param("localhost.com", "localhost.com", False, id="localhost-then-tld"),
    pytest.param("servicewechat.com", "servicewechat.com", False, id="wechat"),
    pytest.param("例子.测试", "xn--fsqu00a.xn--0zwm56d", False, id="idn"),
    pytest.param("例子。测试。", "xn--fsqu00a.xn--0zwm56d", True, id="idn-ideographic-dots"),
    pytest.param("xn--fsqu00a.xn--0zwm56d", "xn--fsqu00a.xn--0zwm56d", False, id="punycode"),
    pytest.param("Bücher.example", "xn--bcher-kva.example", False, id="idn-upper"),
    pytest.param("ｅｘａｍｐｌｅ.com", "example.com", False, id="fullwidth-letters"),
    pytest.param("a%2Eexample.com", "a.example.com", False, id="percent-encoded-dot"),
    pytest.param("", "", False, id="empty"),
    pytest.param(".", "", True, id="only-a-dot"),
]


@pytest.mark.parametrize(("host", "name", "trailing_dot"), NAME_CASES)
def test_real_names_stay_names(host: str, name: str, trailing_dot: bool) -> None:
    """Ordinary DNS names are NAME, lowercased, punycoded, without the trailing dot."""
    info = classify_host(host)
    assert info == HostInfo(host, name, HostKind.NAME, None, trailing_dot)


def test_unencodable_name_is_a_lowercased_name_and_does_not_raise() -> None:
    """A name IDNA cannot encode stays NAME with the lowercased text (callers: not listed)."""
    host = "A" * 64 + ".Example.com"
    info = classify_host(host)
    assert info.kind is HostKind.NAME
    assert info.name == host.lower()


# --------------------------------------------------------------------------- idna_name

@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("Example.COM", "example.com", id="ascii-lowercased"),
        pytest.param("例子.测试", "xn--fsqu00a.xn--0zwm56d", id="idn"),
        pytest.param("例子。测试", "xn--fsqu00a.xn--0zwm56d", id="ideographic-dot"),
        pytest.param("example.com.", "example.com.", id="trailing-dot-kept"),
        pytest.param("münchen.DE", "xn--mnchen-3ya.de", id="mixed"),
    ],
)
def test_idna_name_encodes_each_label(name: str, expected: str) -> None:
    """idna_name lowercases and punycodes per label."""
    assert idna_name(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("a..b", id="empty-label"),
        pytest.param("a" * 64 + ".com", id="label-too-long"),
        pytest.param("\u05d0a.com", id="bidi-violation"),
        pytest.param("a\ue000.com", id="private-use-prohibited"),
    ],
)
def test_idna_name_raises_value_error(name: str) -> None:
    """idna_name raises ValueError when the name cannot be encoded."""
    with pytest.raises(ValueError):
        idna_name(name)


# --------------------------------------------------------------------------- parse_ipv4_loose

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("1.2.3.4", V4("1.2.3.4"), id="dotted"),
        pytest.param("1.2.3.4.", V4("1.2.3.4"), id="one-trailing-dot"),
        pytest.param("1.65536", V4("1.1.0.0"), id="two-part-last-fills-24-bits"),
        pytest.param("1.2.65535", V4("1.2.255.255"), id="three-part-last-fills-16-bits"),
        pytest.param("00", V4("0.0.0.0"), id="octal-zero"),
        pytest.param("0x" + "0" * 5000 + "1", V4("0.0.0.1"), id="long-hex"),
        pytest.param("1.2.3.4..", None, id="two-trailing-dots"),
        pytest.param("", None, id="empty"),
        pytest.param(".", None, id="only-dot"),
        pytest.param("1.16777216", None, id="two-part-overflow"),
        pytest.param("1.2.3.256", None, id="last-part-overflow"),
        pytest.param("256.1", None, id="first-part-overflow"),
        pytest.param("09", None, id="bad-octal"),
        pytest.param("1e2", None, id="exponent"),
        pytest.param("1_0", None, id="underscore"),
        pytest.param("+1", None, id="sign"),
        pytest.param(" 1", None, id="space"),
        pytest.param("１", None, id="fullwidth-not-normalized-here"),
        pytest.param("0x1g", None, id="bad-hex"),
        pytest.param("9" * 5000, None, id="huge-decimal-no-exception"),
    ],
)
def test_parse_ipv4_loose_follows_whatwg(text: str, expected: V4 | None) -> None:
    """parse_ipv4_loose is the WHATWG IPv4 parser on ASCII input."""
    assert parse_ipv4_loose(text) == expected


# --------------------------------------------------------------------------- is_lan_ip

@pytest.mark.parametrize(
    ("address", "lan"),
    [
        pytest.param("10.0.0.1", True, id="10/8"),
        pytest.param("172.16.0.1", True, id="172.16/12-low"),
        pytest.param("172.31.255.255", True, id="172.16/12-high"),
        pytest.param("172.32.0.1", False, id="just-outside-172.16/12"),
        pytest.param("192.168.1.1", True, id="192.168/16"),
        pytest.param("169.254.1.1", True, id="link-local-v4"),
        pytest.param("127.0.0.1", False, id="loopback-v4-not-lan"),
        pytest.param("8.8.8.8", False, id="public-v4"),
        pytest.param("0.0.0.0", False, id="unspecified-v4"),
        pytest.param("::1", False, id="loopback-v6-not-lan"),
        pytest.param("fc00::1", True, id="ula-fc"),
        pytest.param("fd12:3456::1", True, id="ula-fd"),
        pytest.param("fe80::1", True, id="link-local-v6"),
        pytest.param("febf::1", True, id="link-local-v6-high"),
        pytest.param("fec0::1", False, id="site-local-not-fe80/10"),
        pytest.param("2001:db8::1", False, id="global-v6"),
        pytest.param("::ffff:10.0.0.1", True, id="mapped-private"),
        pytest.param("::ffff:169.254.0.1", True, id="mapped-link-local"),
        pytest.param("::ffff:8.8.8.8", False, id="mapped-public"),
        pytest.param("::ffff:127.0.0.1", False, id="mapped-loopback-not-lan"),
    ],
)
def test_is_lan_ip(address: str, lan: bool) -> None:
    """Private, ULA and link-local are LAN (mapped v4 too); loopback and public are not."""
    assert is_lan_ip(ipaddress.ip_address(address)) is lan


# --------------------------------------------------------------------------- describe

@pytest.mark.parametrize(
    ("host", "text"),
    [
        pytest.param("0x7f000001", "IP address 127.0.0.1 (written as '0x7f000001')", id="hex"),
        pytest.param("127.0.0.1", "IP address 127.0.0.1", id="canonical-v4"),
        pytest.param("[::1]", "IP address ::1", id="canonical-v6"),
        pytest.param("1.2.3.4.5", "unparsable IP address '1.2.3.4.5'", id="unparsable"),
        pytest.param("foo.localhost", "localhost name 'foo.localhost'", id="localhost"),
        pytest.param(
            "LOCALHOST.", "localhost name 'localhost' (written as 'LOCALHOST.')", id="localhost-raw"
        ),
        pytest.param("api.example.com", "domain name 'api.example.com'", id="name"),
        pytest.param("", "empty host", id="empty"),
    ],
)
def test_describe_exact(host: str, text: str) -> None:
    """describe() names the kind, the canonical value and the raw spelling when it differs."""
    assert classify_host(host).describe() == text


def test_describe_mapped_mentions_the_v4() -> None:
    """describe() of an IPv4-mapped address shows the IPv4 and the raw spelling."""
    text = classify_host("[::ffff:127.0.0.1]").describe()
    assert "IPv4-mapped 127.0.0.1" in text
    assert "written as '[::ffff:127.0.0.1]'" in text


def test_describe_escapes_control_characters() -> None:
    """The raw spelling is repr-quoted so a log line cannot be split by it."""
    assert "\n" not in classify_host("127.0.0.1\n").describe()


# --------------------------------------------------------------------------- properties

_DIGITS = "0123456789"


def _fullwidth(char: str) -> str:
    return chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char


@st.composite
def _number(draw: st.DrawFn, value: int) -> str:
    """One IPv4 part in decimal, 0-octal or 0x-hex, with optional leading zeros."""
    style = draw(st.sampled_from(["dec", "oct", "hex"]))
    zeros = "0" * draw(st.integers(0, 3))
    if style == "dec":
        return str(value)
    if style == "oct":
        return "0" + zeros + format(value, "o")
    text = "0x" + zeros + format(value, "x")
    return text.upper() if draw(st.booleans()) else text


# How many bytes each part carries for 1-, 2-, 3- and 4-part IPv4 spellings.
_SPLITS = ([4], [1, 3], [1, 1, 2], [1, 1, 1, 1])


@st.composite
def _ipv4_spelling(draw: st.DrawFn) -> tuple[str, V4]:
    value = draw(st.integers(0, 2**32 - 1))
    sizes = draw(st.sampled_from(_SPLITS))
    parts, shift = [], 32
    for size in sizes:
        shift -= 8 * size
        parts.append(draw(_number((value >> shift) & ((1 << (8 * size)) - 1))))
    text = ".".join(parts)
    if draw(st.booleans()):
        text += "."
    return text, V4(value)


@st.composite
def _ipv6_spelling(draw: st.DrawFn) -> tuple[str, V6]:
    mapped_v4 = draw(st.none() | st.integers(0, 2**32 - 1).map(V4))
    if mapped_v4 is not None:
        address = V6((0xFFFF << 32) | int(mapped_v4))
        style = draw(st.sampled_from(["compressed", "exploded", "dotted", "dotted-exploded"]))
    else:
        address = V6(draw(st.integers(0, 2**128 - 1)))
        style = draw(st.sampled_from(["compressed", "exploded"]))
    text = {
        "compressed": lambda: address.compressed,
        "exploded": lambda: address.exploded,
        "dotted": lambda: f"::ffff:{mapped_v4}",
        "dotted-exploded": lambda: f"0:0:0:0:0:ffff:{mapped_v4}",
    }[style]()
    if draw(st.booleans()):
        text = text.upper()
    bracketed = draw(st.booleans())
    if bracketed and draw(st.booleans()):
        text += "%25" + draw(st.sampled_from(["eth0", "1", "wlan0"]))
    if bracketed:
        text = f"[{text}]"
    return text, address


@st.composite
def _disguise(draw: st.DrawFn, text: str) -> str:
    """Full-width characters, ideographic dots and percent-escapes, each char independently."""
    out = []
    for char in text:
        if draw(st.booleans()):
            char = _fullwidth(char)
        if char == "." and draw(st.booleans()):
            char = draw(st.sampled_from(["\u3002", "\uff0e", "\uff61"]))
        if draw(st.integers(0, 3)) == 0:
            char = "".join(f"%{b:02X}" for b in char.encode("utf-8"))
        out.append(char)
    return "".join(out)


@settings(max_examples=2000, deadline=None)
@given(st.data())
def test_any_ip_in_any_spelling_is_ip(data: st.DataObject) -> None:
    """Any IPv4/IPv6 address in any accepted spelling is IP and .ip is that address."""
    text, address = data.draw(_ipv4_spelling() | _ipv6_spelling(), label="spelling")
    if data.draw(st.booleans(), label="disguise"):
        text = data.draw(_disguise(text), label="disguised")
    info = classify_host(text)
    assert info.kind is HostKind.IP
    assert info.ip == address
    if isinstance(address, V6) and address.ipv4_mapped is not None:
        assert isinstance(info.ip, V6)
        assert info.ip.ipv4_mapped == address.ipv4_mapped


_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@st.composite
def _random_case(draw: st.DrawFn, text: str) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c for c in text)


@settings(max_examples=2000, deadline=None)
@given(st.data())
def test_any_subdomain_of_localhost_is_localhost(data: st.DataObject) -> None:
    """<labels>.localhost in any case, with or without a trailing dot, is LOCALHOST."""
    labels = data.draw(st.lists(_LABEL, min_size=1, max_size=4), label="labels")
    host = data.draw(_random_case(".".join([*labels, "localhost"])), label="host")
    if data.draw(st.booleans(), label="trailing dot"):
        host += "."
    info = classify_host(host)
    assert info.kind is HostKind.LOCALHOST
    assert info.name == ".".join([*labels, "localhost"])


@settings(max_examples=500, deadline=None)
@given(
    st.lists(_LABEL, min_size=0, max_size=4),
    st.from_regex(r"[0-9]{1,12}|0[xX][0-9a-fA-F]{0,10}", fullmatch=True),
)
def test_any_host_ending_in_a_number_is_ip(labels: list[str], last: str) -> None:
    """Whatever precedes it, a last label of digits or 0x-hex makes the host an IP attempt."""
    assert classify_host(".".join([*labels, last])).kind is HostKind.IP


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_names_with_a_letter_tld_stay_names(data: st.DataObject) -> None:
    """Ordinary names (alphabetic TLD, not localhost) are NAME with the lowercased name."""
    labels = data.draw(st.lists(_LABEL, min_size=1, max_size=4), label="labels")
    tld = data.draw(st.from_regex(r"[a-z]{2,10}", fullmatch=True), label="tld")
    assume(tld != "localhost")
    name = ".".join([*labels, tld])
    assume(name not in {"localhost.localdomain", "localhost4.localdomain4",
                        "localhost6.localdomain6"})
    info = classify_host(data.draw(_random_case(name), label="host"))
    assert info.kind is HostKind.NAME
    assert info.name == name


@settings(max_examples=1000, deadline=None)
@given(st.text())
def test_a_name_result_is_never_numeric_colon_or_loopback(host: str) -> None:
    """classify_host never raises, and whatever comes out as NAME looks like no IP/loopback."""
    info = classify_host(host)
    if info.kind is HostKind.NAME:
        assert ":" not in info.name
        assert parse_ipv4_loose(info.name) is None
        assert info.name != "localhost"
        assert not info.name.endswith(".localhost")
