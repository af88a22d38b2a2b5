"""One call as wxgate judges it: every fact the rules read, taken from the request once,
where the call is identified, and frozen.

The proxy connects to `host_connected` (the CONNECT target, or the absolute-form URL's
host); the request names `host_named` (Host header / HTTP/2 :authority) and the client's
TLS handshake `sni`. The URL rules judge `host`, the name the request shows; the three
must agree (`domain.host_mismatch`). Everything is as the client sent it, before `resolve`
points the request elsewhere.

Pure: the IdentifyApp addon hands over the values, so that a Call can be built from a
deserialised flow without a proxy as well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .calls import RequestHead, classify
from .clients import is_miniprogram, parse_referer, platform_of
from .config import AppConfig, Config

_PORT_RE = re.compile(r":(\d{1,5})$")


def explicit_port(authority: str) -> int | None:
    """The port written in a Host header or authority ("h", "h:443", "[::1]:8443")."""
    match = _PORT_RE.search(authority.strip())
    if not match or (authority.count(":") > 1 and "]" not in authority):
        return None  # a bare IPv6 address, not a port
    return int(match[1])


def authority_host(authority: str) -> str:
    """The host part of a Host header or :authority ("h", "h:443", "[::1]:8443")."""
    text = authority.strip()
    if text.startswith("["):
        return text[1:text.find("]")] if "]" in text else text
    if text.count(":") == 1:
        return text.split(":", 1)[0]
    return text


@dataclass(frozen=True)
class Call:
    method: str
    scheme: str  # http | https, as the request line says (a WebSocket upgrade too)
    # The host the proxy connects to: the CONNECT target or the absolute-form URL's host.
    host_connected: str
    # The host the request names: Host header or :authority, port stripped; None if absent.
    host_named: str | None
    # The name the URL rules judge: the named host as the proxy parses it, else the
    # connected one (mitmproxy's `pretty_host`).
    host: str
    sni: str | None
    port: int  # the port the client asked for
    # The port written in the Host header or authority; behind CONNECT an explicit :443
    # shows only there.
    explicit_port: int | None
    device: str
    referer: str | None  # as sent; None when the request has none
    user_agent: str
    platform: str | None
    in_scope: bool = False
    # The configured app the call is judged against; None for an unknown appid.
    app: AppConfig | None = None
    appid: str | None = None
    app_version: str | None = None
    # request | uploadFile | downloadFile | connectSocket | media | webview | other
    api: str = "other"
    api_reason: str = ""
    # A web-view navigation (document or iframe): judged by business_domains.
    navigation: bool = False


# A flow IdentifyApp has not identified (yet, or ever: mitm.it, the control host).
UNIDENTIFIED = Call(method="", scheme="", host_connected="", host_named=None, host="", sni=None,
                    port=0, explicit_port=None, device="", referer=None, user_agent="",
                    platform=None)


class _Memo:
    """The Calls already made, by everything `identify` is handed.

    A phone sends the same few header sets (RequestHead holds only the headers the
    decision reads, no cookies or ids) to the same few hosts over and over, and building a
    Call cost more than any rule on it. A Call is frozen, so flows may share one. A new
    config starts afresh; a call with long values (a hostile 1 MB Referer) is never kept,
    and the oldest entry makes room, so the memo stays small.
    """

    MAX_ENTRIES = 1024
    MAX_CHARS = 4096

    def __init__(self) -> None:
        self.config: Config | None = None
        self.calls: dict[tuple[object, ...], Call] = {}

    def get(self, key: tuple[object, ...], config: Config) -> Call | None:
        if config is not self.config:
            self.config = config
            self.calls.clear()
            return None
        return self.calls.get(key)

    def put(self, key: tuple[object, ...], call: Call) -> Call:
        if len(self.calls) >= self.MAX_ENTRIES:
            del self.calls[next(iter(self.calls))]
        self.calls[key] = call
        return call


_MEMO = _Memo()


def identify(head: RequestHead, *, scheme: str, host_connected: str, host: str,
             host_header: str | None, authority: str | None, sni: str | None, port: int,
             device: str, config: Config) -> Call:
    """Whose call this is: in scope or not, which app, which wx API (or media, or a
    web-view page's load), which platform (SPEC §4)."""
    chars = (len(head.method) + len(head.user_agent) + len(head.referer or "")
             + len(head.upgrade) + len(head.content_type) + len(head.accept)
             + len(head.sec_fetch_dest) + len(head.xweb_xhr) + len(host_connected) + len(host)
             + len(host_header or "") + len(authority or "") + len(sni or "") + len(device))
    if chars > _Memo.MAX_CHARS:
        # Not even hashed: a hostile 1 MB header would cost more to look up than to judge.
        return _identify(head, scheme, host_connected, host, host_header, authority, sni, port,
                         device, config)
    key = (head, scheme, host_connected, host, host_header, authority, sni, port, device)
    call = _MEMO.get(key, config)
    if call is None:
        call = _MEMO.put(key, _identify(head, scheme, host_connected, host, host_header,
                                        authority, sni, port, device, config))
    return call


def _identify(head: RequestHead, scheme: str, host_connected: str, host: str,
              host_header: str | None, authority: str | None, sni: str | None, port: int,
              device: str, config: Config) -> Call:
    app: AppConfig | None = None
    judged_as: AppConfig | None = None
    version: str | None = None
    interface = None
    if config.scope == "all" or is_miniprogram(head.referer, head.user_agent, head.xweb_xhr):
        parsed = parse_referer(head.referer)
        app = config.app(parsed.appid) if parsed else config.default_app()
        judged_as = app
        if app is None and parsed and config.apps:
            # An unknown appid stays in scope, judged against no whitelist: the Referer
            # rule refuses it.
            judged_as = AppConfig(parsed.appid)
        if judged_as is not None:
            version = parsed.version if parsed else judged_as.version
            interface = classify(judged_as, host.lower(), head)
    return Call(
        method=head.method, scheme=scheme, host_connected=host_connected,
        host_named=authority_host(host_header) if host_header else None, host=host, sni=sni,
        port=port,
        # Behind CONNECT only the Host header shows an explicit :443.
        explicit_port=explicit_port(host_header or "") or explicit_port(authority or ""),
        device=device, referer=head.referer, user_agent=head.user_agent,
        platform=platform_of(head.user_agent),
        in_scope=interface is not None, app=app,
        appid=judged_as.appid if interface is not None and judged_as else None,
        app_version=version, api=interface.api if interface else "other",
        api_reason=interface.reason if interface else "",
        navigation=interface.navigation if interface else False,
    )
