"""Tests for addons.policy.urls: which interface a call belongs to and which URL rule it breaks."""

from __future__ import annotations

import pytest
from wxgate.policy.config import AppConfig, ClientRules, DomainEntry, parse_domain_entry
from wxgate.policy.urls import Interface, Target, interface_for, judge_navigation, judge_target

APPID = "wx0123456789abcdef"


def entries(*raws: str) -> tuple[DomainEntry, ...]:
    out = []
    for raw in raws:
        entry = parse_domain_entry(raw)
        assert entry is not None, raw
        out.append(entry)
    return tuple(out)


def make_app(**domains: tuple[str, ...]) -> AppConfig:
    table = {api: entries(*domains.get(api, ())) for api in
             ("request", "uploadFile", "downloadFile", "connectSocket")}
    return AppConfig(APPID, domains=table)


APP = make_app(
    request=("https://api.example.com", "https://api.example.com:8443"),
    uploadFile=("https://upload.example.com",),
    downloadFile=("https://cdn.example.com",),
    connectSocket=("wss://ws.example.com",),
)


def target(url_scheme: str, host: str, port: int | None = None) -> Target:
    """A Target as a client wrote it: `port` None means the URL names no port."""
    default = 443 if url_scheme.lower() in ("https", "wss") else 80
    return Target(url_scheme, host, port if port is not None else default, port)


# --------------------------------------------------------------------------- judge_target

JUDGE_CASES = [
    # allowed
    pytest.param(target("https", "api.example.com"), "request", None, id="request-listed"),
    pytest.param(target("https", "upload.example.com"), "uploadFile", None,
                 id="uploadFile-listed"),
    pytest.param(target("https", "cdn.example.com"), "downloadFile", None,
                 id="downloadFile-listed"),
    pytest.param(target("wss", "ws.example.com"), "connectSocket", None,
                 id="connectSocket-listed"),
    pytest.param(target("https", "API.Example.com"), "request", None, id="host-case-insensitive"),
    pytest.param(target("HTTPS", "api.example.com"), "request", None,
                 id="scheme-case-insensitive"),
    # scheme
    pytest.param(target("http", "api.example.com"), "request", "scheme.insecure",
                 id="http-request"),
    pytest.param(target("http", "upload.example.com"), "uploadFile", "scheme.insecure",
                 id="http-uploadFile"),
    pytest.param(target("ws", "ws.example.com"), "connectSocket", "scheme.insecure",
                 id="ws-connectSocket"),
    pytest.param(target("http", "evil.example.net"), "request", "scheme.insecure",
                 id="scheme-checked-before-domain"),
    # whitelist
    pytest.param(target("https", "evil.example.net"), "request", "domain.not_listed",
                 id="unlisted-host"),
    pytest.param(target("https", "api.example.com"), "uploadFile", "domain.not_listed",
                 id="listed-for-another-api"),
    pytest.param(target("https", "example.com"), "request", "domain.not_listed",
                 id="parent-domain-not-listed"),
    pytest.param(target("https", "v2.api.example.com"), "request", "domain.not_listed",
                 id="subdomain-not-listed"),
    pytest.param(target("https", "api.example.com."), "request", "domain.not_listed",
                 id="trailing-dot"),
    # IP spellings
    pytest.param(target("https", "127.0.0.1"), "request", "domain.ip_address", id="ip-dotted"),
    pytest.param(target("https", "93.184.216.34"), "request", "domain.ip_address",
                 id="ip-public"),
    pytest.param(target("https", "2130706433"), "request", "domain.ip_address",
                 id="ip-decimal"),
    pytest.param(target("https", "0x7f000001"), "request", "domain.ip_address", id="ip-hex"),
    pytest.param(target("https", "0177.0.0.1"), "request", "domain.ip_address", id="ip-octal"),
    pytest.param(target("https", "[::1]"), "request", "domain.ip_address", id="ipv6-bracketed"),
    pytest.param(target("https", "::1"), "request", "domain.ip_address", id="ipv6-bare"),
    pytest.param(target("https", "[::ffff:127.0.0.1]"), "request", "domain.ip_address",
                 id="ipv6-mapped-bracketed"),
    pytest.param(target("https", "::ffff:127.0.0.1"), "request", "domain.ip_address",
                 id="ipv6-mapped-bare"),
    pytest.param(target("wss", "127.0.0.1"), "connectSocket", "domain.ip_address",
                 id="ip-websocket"),
    # localhost
    pytest.param(target("https", "localhost"), "request", "domain.localhost", id="localhost"),
    pytest.param(target("https", "LOCALHOST."), "request", "domain.localhost",
                 id="localhost-upper-trailing-dot"),
    pytest.param(target("https", "foo.localhost"), "request", "domain.localhost",
                 id="sub-localhost"),
    # forbidden
    pytest.param(target("https", "api.weixin.qq.com"), "request", "domain.forbidden",
                 id="api-weixin"),
    pytest.param(target("https", "API.WEIXIN.QQ.COM"), "request", "domain.forbidden",
                 id="api-weixin-upper"),
    # ports: the request list has api.example.com without a port and with :8443
    pytest.param(target("https", "api.example.com", 8443), "request", None,
                 id="configured-port-8443"),
    pytest.param(target("https", "api.example.com", 9443), "request", "domain.port_mismatch",
                 id="other-port-9443"),
    pytest.param(target("https", "api.example.com", 443), "request", "domain.port_mismatch",
                 id="explicit-443-matches-no-entry"),
    # ports: uploadFile has only an entry without a port
    pytest.param(target("https", "upload.example.com"), "uploadFile", None,
                 id="no-port-entry-no-port-written"),
    pytest.param(target("https", "upload.example.com", 443), "uploadFile",
                 "domain.port_mismatch", id="no-port-entry-explicit-443"),
    pytest.param(target("https", "upload.example.com", 8443), "uploadFile",
                 "domain.port_mismatch", id="no-port-entry-other-port"),
    pytest.param(Target("https", "upload.example.com", 8443, None), "uploadFile",
                 "domain.port_mismatch", id="no-port-entry-connected-elsewhere"),
    pytest.param(target("wss", "ws.example.com", 9000), "connectSocket", "domain.port_mismatch",
                 id="socket-port-without-socket_any_port"),
]


@pytest.mark.parametrize(("call", "api", "rule"), JUDGE_CASES)
def test_judge_target_returns_the_broken_rule(call: Target, api: str, rule: str | None) -> None:
    violation = judge_target(call, api, APP)
    assert (violation.rule if violation else None) == rule
    if violation:
        assert violation.api == api
        assert violation.detail
        assert violation.fails_call


@pytest.mark.parametrize(("api", "count"), [
    pytest.param("request", "2 entries", id="request-2-entries"),
    pytest.param("uploadFile", "1 entry", id="uploadFile-1-entry"),
])
def test_not_listed_detail_names_the_list_and_its_size(api: str, count: str) -> None:
    violation = judge_target(target("https", "evil.example.net"), api, APP)
    assert violation is not None
    assert violation.detail == f"evil.example.net is not in the {api} domain list ({count})"
    assert violation.err_msg == f"{api}:fail url not in domain list"


def test_not_listed_detail_counts_an_empty_list() -> None:
    violation = judge_target(target("https", "a.example.com"), "request", make_app())
    assert violation is not None and "(0 entries)" in violation.detail


def test_trailing_dot_detail_says_the_dot_is_not_stripped() -> None:
    violation = judge_target(target("https", "api.example.com."), "request", APP)
    assert violation is not None
    assert violation.detail.startswith("api.example.com. is not in the request domain list")
    assert "trailing dot" in violation.detail


def test_ip_detail_shows_how_the_address_was_written() -> None:
    violation = judge_target(target("https", "2130706433"), "request", APP)
    assert violation is not None
    assert "127.0.0.1" in violation.detail and "2130706433" in violation.detail


def test_explicit_443_detail_explains_that_the_entry_has_no_port() -> None:
    violation = judge_target(target("https", "upload.example.com", 443), "uploadFile", APP)
    assert violation is not None
    assert "upload.example.com:443" in violation.detail
    assert "has no port" in violation.detail


def test_port_mismatch_detail_lists_the_configured_entries() -> None:
    violation = judge_target(target("https", "api.example.com", 9443), "request", APP)
    assert violation is not None
    assert "https://api.example.com:8443" in violation.detail


IDN_CASES = [
    pytest.param("https://xn--bcher-kva.example", "bücher.example", id="unicode-host-puny-entry"),
    pytest.param("https://xn--bcher-kva.example", "xn--bcher-kva.example",
                 id="puny-host-puny-entry"),
    pytest.param("https://bücher.example", "xn--bcher-kva.example", id="puny-host-unicode-entry"),
    pytest.param("https://xn--bcher-kva.example", "BÜCHER.example", id="unicode-upper-host"),
]


@pytest.mark.parametrize(("entry", "host"), IDN_CASES)
def test_idn_host_matches_its_punycode_entry(entry: str, host: str) -> None:
    app = make_app(request=(entry,))
    assert judge_target(target("https", host), "request", app) is None


def test_idn_lookalike_is_not_listed() -> None:
    app = make_app(request=("https://xn--bcher-kva.example",))
    violation = judge_target(target("https", "bucher.example"), "request", app)
    assert violation is not None and violation.rule == "domain.not_listed"


LAN_CASES = [
    pytest.param("192.168.1.10", False, "domain.ip_address", id="lan-off"),
    pytest.param("192.168.1.10", True, None, id="lan-192.168"),
    pytest.param("10.0.0.5", True, None, id="lan-10"),
    pytest.param("172.16.3.4", True, None, id="lan-172.16"),
    pytest.param("127.0.0.1", True, "domain.ip_address", id="loopback-never"),
    pytest.param("2130706433", True, "domain.ip_address", id="loopback-decimal-never"),
    pytest.param("[::1]", True, "domain.ip_address", id="loopback-v6-never"),
    pytest.param("8.8.8.8", True, "domain.ip_address", id="public-ip-never"),
    pytest.param("localhost", True, "domain.localhost", id="localhost-never"),
]


@pytest.mark.parametrize(("host", "allow_lan_ip", "rule"), LAN_CASES)
def test_allow_lan_ip_lets_only_lan_addresses_pass(
    host: str, allow_lan_ip: bool, rule: str | None
) -> None:
    violation = judge_target(target("https", host), "request", APP, allow_lan_ip=allow_lan_ip)
    assert (violation.rule if violation else None) == rule


def test_allow_lan_ip_still_requires_https() -> None:
    violation = judge_target(target("http", "192.168.1.10"), "request", APP, allow_lan_ip=True)
    assert violation is not None and violation.rule == "scheme.insecure"


SOCKET_ANY_PORT_CASES = [
    pytest.param(target("wss", "ws.example.com", 9000), "connectSocket", None,
                 id="wss-any-port"),
    pytest.param(target("wss", "ws.example.com", 443), "connectSocket", None,
                 id="wss-explicit-443"),
    pytest.param(target("wss", "ws.example.com"), "connectSocket", None, id="wss-no-port"),
    pytest.param(target("https", "upload.example.com", 9000), "uploadFile",
                 "domain.port_mismatch", id="only-sockets-relax"),
    pytest.param(target("https", "api.example.com", 9443), "request", "domain.port_mismatch",
                 id="request-still-strict"),
    pytest.param(target("wss", "other.example.com", 9000), "connectSocket", "domain.not_listed",
                 id="still-needs-the-host"),
]


@pytest.mark.parametrize(("call", "api", "rule"), SOCKET_ANY_PORT_CASES)
def test_socket_any_port_relaxes_only_portless_wss_entries(
    call: Target, api: str, rule: str | None
) -> None:
    violation = judge_target(call, api, APP, ClientRules(socket_any_port=True))
    assert (violation.rule if violation else None) == rule


def test_socket_any_port_does_not_relax_a_configured_port() -> None:
    app = make_app(connectSocket=("wss://ws.example.com:8443",))
    rules = ClientRules(socket_any_port=True)
    assert judge_target(target("wss", "ws.example.com", 8443), "connectSocket", app, rules) is None
    violation = judge_target(target("wss", "ws.example.com", 9000), "connectSocket", app, rules)
    assert violation is not None and violation.rule == "domain.port_mismatch"


def test_target_url_authority_shows_the_written_port() -> None:
    assert target("https", "a.example.com").url_authority == "a.example.com"
    assert target("https", "a.example.com", 443).url_authority == "a.example.com:443"


# --------------------------------------------------------------------------- interface_for

INTERFACE_CASES = [
    pytest.param("ws.example.com", True, "GET", "", "connectSocket", id="websocket"),
    pytest.param("api.example.com", True, "GET", "", "connectSocket",
                 id="websocket-to-request-host"),
    pytest.param("api.example.com", False, "POST", "multipart/form-data; boundary=x",
                 "uploadFile", id="multipart-post"),
    pytest.param("upload.example.com", False, "post", "  Multipart/Form-Data; boundary=x",
                 "uploadFile", id="multipart-post-any-case"),
    pytest.param("upload.example.com", False, "PUT", "multipart/form-data; boundary=x",
                 "request", id="multipart-put-is-request"),
    pytest.param("upload.example.com", False, "POST", "application/json", "request",
                 id="json-post-to-upload-host"),
    pytest.param("cdn.example.com", False, "GET", "", "downloadFile", id="get-download-only-host"),
    pytest.param("CDN.Example.com", False, "get", "", "downloadFile",
                 id="get-download-only-host-any-case"),
    pytest.param("cdn.example.com", False, "POST", "application/json", "request",
                 id="post-to-download-host"),
    pytest.param("api.example.com", False, "GET", "", "request", id="get-request-host"),
    pytest.param("evil.example.net", False, "GET", "", "request", id="get-unlisted-host"),
]


@pytest.mark.parametrize(("host", "websocket", "method", "content_type", "api"),
                         INTERFACE_CASES)
def test_interface_for_names_the_wx_api(
    host: str, websocket: bool, method: str, content_type: str, api: str
) -> None:
    interface = interface_for(APP, host, websocket=websocket, method=method,
                              content_type=content_type)
    assert isinstance(interface, Interface)
    assert interface.api == api
    assert interface.reason.strip()


@pytest.mark.parametrize(("host", "websocket", "method", "content_type", "reason"), [
    ("ws.example.com", True, "GET", "", "a connectSocket call (WebSocket upgrade)"),
    ("api.example.com", False, "POST", "multipart/form-data; boundary=x",
     "an uploadFile call (multipart body)"),
    ("cdn.example.com", False, "GET", "",
     "a downloadFile call (a GET to a host listed only for downloadFile)"),
    ("evil.example.net", False, "GET", "", "a wx.request call"),
], ids=["socket", "upload", "download", "request"])
def test_interface_reason_names_the_interface_plainly(
    host: str, websocket: bool, method: str, content_type: str, reason: str
) -> None:
    """The reason ends a URL rule's detail; an https:// call is never called "plain HTTP"."""
    interface = interface_for(APP, host, websocket=websocket, method=method,
                              content_type=content_type)
    assert interface.reason == reason


def test_get_to_a_host_in_both_download_and_request_lists_is_request() -> None:
    app = make_app(request=("https://files.example.com",),
                   downloadFile=("https://files.example.com",))
    interface = interface_for(app, "files.example.com", websocket=False, method="GET",
                              content_type="")
    assert interface.api == "request"


def test_interface_for_is_never_a_navigation() -> None:
    assert interface_for(APP, "api.example.com", websocket=False, method="GET",
                         content_type="").navigation is False


# --------------------------------------------------------------------------- judge_navigation

WEBVIEW_APP = AppConfig(APPID, business_domains=entries("https://h5.example.org",
                                                        "https://Shop.Example.com"))

NAVIGATION_CASES = [
    pytest.param(target("https", "h5.example.org"), None, id="listed"),
    pytest.param(target("https", "H5.Example.ORG"), None, id="any-case"),
    pytest.param(target("https", "shop.example.com"), None, id="entry-written-in-capitals"),
    pytest.param(target("https", "m.h5.example.org"), None, id="subdomain"),
    pytest.param(target("https", "h5.example.org", 8443), None, id="any-port"),
    pytest.param(target("http", "h5.example.org"), "webview.not_listed", id="http"),
    pytest.param(target("HTTP", "h5.example.org"), "webview.not_listed", id="http-capitals"),
    pytest.param(target("https", "evil.example.net"), "webview.not_listed", id="unlisted"),
    pytest.param(target("https", "example.org"), "webview.not_listed", id="parent-domain"),
    pytest.param(target("https", "һ5.example.org"), "webview.not_listed", id="idn-lookalike"),
    pytest.param(target("https", "xh5.example.org"), "webview.not_listed",
                 id="suffix-not-on-a-dot"),
    pytest.param(target("https", "h5.example.org."), "webview.not_listed", id="trailing-dot"),
    pytest.param(target("https", "127.0.0.1"), "webview.not_listed", id="ip"),
    pytest.param(target("https", "localhost"), "webview.not_listed", id="localhost"),
]


@pytest.mark.parametrize(("call", "rule"), NAVIGATION_CASES)
def test_judge_navigation_wants_https_on_business_domains(call: Target, rule: str | None) -> None:
    violation = judge_navigation(call, WEBVIEW_APP)
    assert (violation.rule if violation else None) == rule
    if violation:
        assert violation.api == "webview"
        assert violation.err_msg is None  # the client shows a page; there is no errMsg


def test_judge_navigation_detail_names_host_and_list_size() -> None:
    violation = judge_navigation(target("https", "evil.example.net"), WEBVIEW_APP)
    assert violation is not None
    assert "evil.example.net is not in business_domains (2 entries" in violation.detail
    http = judge_navigation(target("http", "h5.example.org"), WEBVIEW_APP)
    assert http is not None and "http://" in http.detail


def test_no_business_domains_refuses_every_navigation() -> None:
    violation = judge_navigation(target("https", "h5.example.org"), AppConfig(APPID))
    assert violation is not None and "(0 entries" in violation.detail
