"""What kind of call a request is, from its headers alone (SPEC §4): one of the four wx
network APIs, media the view layer loads itself, or what a <web-view> page loads.

Only a wx API call answers to the server-domain lists. Media (`<image>`, `<video>`, CSS
`url()`) answers to the certificate rules only; a web-view page is a browser whose
navigations answer to `business_domains` and whose other loads answer to the certificate
rules only. The engines' real header sets are test data (tests/engine_headers.yaml).

Pure: the addons hand over the header values.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .clients import from_view_layer, is_view_layer_origin, is_webview_user_agent, parse_referer
from .config import AppConfig
from .urls import Interface, interface_for

MEDIA = "media"
WEBVIEW = "webview"
# Loads that are not wx API calls: judged by the certificate rules only (a web-view
# navigation by business_domains as well).
PAGE_LOADS = frozenset({MEDIA, WEBVIEW})

# What a browser engine loads for an element or a style sheet; a wx.request never says so.
MEDIA_DESTS = frozenset({"image", "video", "audio", "track", "font", "style"})
# A document in a frame of its own: a navigation of the web-view or of an iframe in it.
NAVIGATION_DESTS = frozenset({"document", "iframe", "frame"})
# The first media range of a browser's Accept for an element it loads.
_MEDIA_ACCEPT_RE = re.compile(r"^\s*(image|video|audio)/", re.IGNORECASE)
_HTML_ACCEPT_RE = re.compile(r"^\s*(text/html|application/xhtml\+xml)", re.IGNORECASE)
_BODYLESS = frozenset({"GET", "HEAD"})
# The headers read, by their lower-case name.
_READ = {"user-agent": "user_agent", "referer": "referer", "upgrade": "upgrade",
         "content-type": "content_type", "accept": "accept", "sec-fetch-dest": "sec_fetch_dest",
         "xweb_xhr": "xweb_xhr"}
# The same, by bytes names as well: mitmproxy's raw fields are matched without decoding
# every header's name (most are not read).
_READ_ANY: dict[str | bytes, str] = {}
for _name, _key in _READ.items():
    _READ_ANY[_name] = _READ_ANY[_name.encode()] = _key
_FETCH_PREFIXES = ("sec-fetch-", b"sec-fetch-")


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class RequestHead:
    """The request line and header values the decision reads."""

    method: str
    user_agent: str = ""
    # None when the request carries no Referer at all.
    referer: str | None = None
    upgrade: str = ""
    content_type: str = ""
    accept: str = ""
    sec_fetch_dest: str = ""
    # The Windows client's marker header.
    xweb_xhr: str = ""
    # Any Sec-Fetch-* header at all: every Chromium engine and WebKit from iOS 16.4 on send
    # them with everything they load; a native HTTP stack never does.
    fetch_metadata: bool = False

    @classmethod
    def of(cls, method: str, fields: Iterable[tuple[str | bytes, str | bytes]]) -> RequestHead:
        """From (name, value) pairs in any case: a dict's items() or mitmproxy's
        `Headers.fields`. A repeated header's values are joined with ", ", as mitmproxy does;
        only the values used are decoded."""
        values: dict[str, str] = {}
        fetch_metadata = False
        for raw_name, raw_value in fields:
            name = raw_name.lower()
            key = _READ_ANY.get(name)
            if key is not None:
                value = _text(raw_value)
                values[key] = f"{values[key]}, {value}" if key in values else value
            elif name[:10] in _FETCH_PREFIXES:
                fetch_metadata = True
        dest = values.pop("sec_fetch_dest", "").strip().lower()
        return cls(method=method.upper(), sec_fetch_dest=dest,
                   fetch_metadata=fetch_metadata or bool(dest), **values)


def is_websocket_upgrade(upgrade: str | None) -> bool:
    """The Upgrade header names websocket among its comma-separated tokens, in any case.

    mitmproxy forwards such a request and makes it a WebSocket once the server answers 101;
    comparing the whole header instead let `Upgrade: websocket, foo` pass as a request,
    past the socket list and limit.
    """
    return any(token.strip().lower() == "websocket" for token in (upgrade or "").split(","))


def is_webview_page(head: RequestHead) -> bool:
    """A load by a web-view page: its User-Agent says `miniProgram` and its Referer is not
    the mini program's own (page-frame, or the view layer's bare origin)."""
    return is_webview_user_agent(head.user_agent) and not from_view_layer(head.referer)


def is_navigation(head: RequestHead) -> bool:
    """A document load: `Sec-Fetch-Dest` document or iframe, or, from a web-view page on an
    engine without Fetch Metadata (iOS before 16.4), a GET that asks for HTML first."""
    if head.sec_fetch_dest in NAVIGATION_DESTS:
        return True
    return (not head.fetch_metadata and head.method in _BODYLESS and is_webview_page(head)
            and bool(_HTML_ACCEPT_RE.match(head.accept)))


def _engine_media(head: RequestHead) -> str | None:
    """Why a request without Fetch Metadata (WebKit before iOS 16.4, a native player) is
    media, or None.

    A wx API call always carries the whole page-frame Referer (the mini program can't
    change it), so it fits none of these: iOS's native player (AppleCoreMedia); the view
    layer's bare origin as Referer, which WebKit sends for an element it loads from another
    host; no page-frame Referer and an Accept that starts with image/, video/ or audio/.
    The last two only for a GET or HEAD without Content-Type, as an element load is.
    """
    if head.user_agent.startswith("AppleCoreMedia/"):
        return "iOS media player (AppleCoreMedia)"
    if head.method not in _BODYLESS or head.content_type:
        return None
    if is_view_layer_origin(head.referer):
        return "Referer is the view layer's bare origin, which no wx API call sends"
    if _MEDIA_ACCEPT_RE.match(head.accept) and parse_referer(head.referer) is None:
        return f"Accept starts with {head.accept.split(',')[0].strip()} and no page-frame " \
               "Referer"
    return None


def classify(app: AppConfig, host: str, head: RequestHead) -> Interface:
    """Which kind of call this is, with the reason, in the order that cannot mistake a
    wx API call for a page load: a navigation, a web-view page's own load, a WebSocket, an
    element the view layer loads, and otherwise the wx API the headers point to."""
    if is_navigation(head):
        how = (f"Sec-Fetch-Dest {head.sec_fetch_dest}" if head.sec_fetch_dest
               else "web-view User-Agent asking for HTML")
        return Interface(WEBVIEW, f"a web-view navigation ({how})", navigation=True)
    if is_webview_page(head):
        return Interface(WEBVIEW, "a web-view page's own load (web-view User-Agent without "
                         "the mini program's Referer)")
    if is_websocket_upgrade(head.upgrade):
        return interface_for(app, host, websocket=True, method=head.method,
                             content_type=head.content_type)
    if head.sec_fetch_dest in MEDIA_DESTS:
        return Interface(MEDIA, f"media the view layer loads (Sec-Fetch-Dest "
                         f"{head.sec_fetch_dest})")
    if not head.fetch_metadata and (why := _engine_media(head)):
        return Interface(MEDIA, f"media the view layer loads ({why})")
    return interface_for(app, host, websocket=False, method=head.method,
                         content_type=head.content_type)


def non_business_domain_page(origin: str, detail: str = "") -> str:
    """The page the client shows instead of a web-view page that is not on its business
    domains ("无法打开该页面 / 不支持打开非业务域名"), naming what was refused."""
    shown = html.escape(origin)
    why = f'<p class="why">wxgate: webview.not_listed: {html.escape(detail)}</p>' if detail else ""
    return f"""<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>无法打开该页面</title>
<style>
body {{ margin: 0; font-family: -apple-system, "PingFang SC", "Microsoft YaHei", sans-serif;
       background: #ededed; color: #191919; text-align: center; }}
.icon {{ width: 64px; height: 64px; margin: 96px auto 24px; border-radius: 50%;
        background: #fa9d3b; color: #fff; font: bold 44px/64px sans-serif; }}
h1 {{ font-size: 20px; font-weight: 500; margin: 0 24px 12px; }}
p {{ font-size: 15px; color: #808080; margin: 0 32px 8px; word-break: break-all; }}
.why {{ font-size: 12px; margin-top: 48px; }}
</style>
</head>
<body>
<div class="icon">!</div>
<h1>无法打开该页面</h1>
<p>不支持打开非业务域名 <span class="host">{shown}</span></p>
<p>请重新配置</p>
{why}
</body>
</html>
"""
