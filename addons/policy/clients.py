"""Who is calling: the mini program's Referer, the client markers, the platform.

Pure functions over header values; the addons read the headers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_REFERER_RE = re.compile(
    r"^https://servicewechat\.com/(?P<appid>[A-Za-z0-9_]+)/(?P<version>[A-Za-z0-9._-]+)"
    r"/page-frame\.html$"
)
# The versions a page-frame Referer carries: "0" (develop, trial, review), "devtools", or a
# release number. The config's `version` takes the same.
_VERSION_RE = re.compile(r"0|devtools|\d+")


@dataclass(frozen=True)
class Referer:
    appid: str
    version: str


def is_referer_version(text: str) -> bool:
    return _VERSION_RE.fullmatch(text) is not None


def canonical_referer(appid: str, version: str) -> str:
    return f"https://servicewechat.com/{appid}/{version}/page-frame.html"


def parse_referer(value: str | None) -> Referer | None:
    """The appid and version of a page-frame Referer; None for anything else."""
    if not value:
        return None
    match = _REFERER_RE.match(value.strip())
    if not match or not is_referer_version(match["version"]):
        return None
    return Referer(match["appid"], match["version"])


# The view layer's origin: what a browser engine sends as Referer for an element it loads
# from another host under the default referrer policy (iOS sends no more than this).
_VIEW_LAYER_ORIGIN_RE = re.compile(r"^https://servicewechat\.com/?$", re.IGNORECASE)


def is_view_layer_origin(referer: str | None) -> bool:
    """The bare origin https://servicewechat.com/, which no wx API call sends (their
    Referer is always the whole page-frame URL)."""
    return bool(referer) and _VIEW_LAYER_ORIGIN_RE.match((referer or "").strip()) is not None


def from_view_layer(referer: str | None) -> bool:
    """The Referer is the mini program's own: its page-frame URL, or the bare origin
    https://servicewechat.com/ that a browser engine cuts it down to for another host."""
    return is_view_layer_origin(referer) or parse_referer(referer) is not None


def is_webview_user_agent(user_agent: str | None) -> bool:
    """The web-view marker (WeChat 7.0.0 and later). Case matters: DevTools' own service
    layer says `miniprogram`, and `MiniProgramEnv/` is the mini program itself."""
    return "miniProgram" in (user_agent or "")


def is_miniprogram(referer: str | None, user_agent: str | None, xweb_xhr: str | None) -> bool:
    """A call is a mini program's by its Referer (page-frame, or the view layer's origin for
    an element it loads), its User-Agent, or the Windows client's header."""
    if from_view_layer(referer):
        return True
    ua = user_agent or ""
    if "MiniProgramEnv/" in ua or is_webview_user_agent(ua):
        return True
    return (xweb_xhr or "").strip() == "1"


# Checked in order: DevTools embeds the OS of the desk it runs on, and the iPad/Mac
# clients carry more than one marker.
_PLATFORMS = (
    ("devtools", ("wechatdevtools",)),
    ("ios", ("miniprogramenv/ios", "iphone", "ipad", "ipod")),
    ("android", ("miniprogramenv/android", "android")),
    ("windows", ("miniprogramenv/windows", "windowswechat", "windows nt")),
    ("macos", ("miniprogramenv/mac", "macwechat", "mac os x", "macintosh")),
)


def platform_of(user_agent: str | None) -> str | None:
    ua = (user_agent or "").lower()
    if not ua:
        return None
    for name, markers in _PLATFORMS:
        if any(m in ua for m in markers):
            return name
    return None
