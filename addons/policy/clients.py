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
_VERSION_RE = re.compile(r"^(0|devtools|\d+)$")


@dataclass(frozen=True)
class Referer:
    appid: str
    version: str


def canonical_referer(appid: str, version: str) -> str:
    return f"https://servicewechat.com/{appid}/{version}/page-frame.html"


def parse_referer(value: str | None) -> Referer | None:
    """The appid and version of a page-frame Referer; None for anything else."""
    if not value:
        return None
    match = _REFERER_RE.match(value.strip())
    if not match or not _VERSION_RE.match(match["version"]):
        return None
    return Referer(match["appid"], match["version"])


def is_miniprogram(referer: str | None, user_agent: str | None, xweb_xhr: str | None) -> bool:
    """A call is a mini program's by its Referer, its User-Agent, or the Windows client's header."""
    if parse_referer(referer):
        return True
    ua = user_agent or ""
    if "MiniProgramEnv/" in ua or "miniProgram" in ua:
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
