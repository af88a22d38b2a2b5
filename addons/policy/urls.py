"""URL rules: scheme, domain whitelist, IP and localhost hosts, ports, forbidden hosts,
which wx API (request, uploadFile, downloadFile, connectSocket) a call belongs to, and
where a web-view may navigate (business_domains).

Pure: the addons turn a flow into a `Target`, this module returns the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import FORBIDDEN_HOSTS, SCHEME_FOR_API, AppConfig, ClientRules, DomainEntry
from .hosts import HostKind, classify_host, is_lan_ip
from .rules import Violation

DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}


@dataclass(frozen=True)
class Target:
    """Where a call goes, as the mini program wrote it."""

    scheme: str  # https | http | wss | ws
    host: str  # as the client named it (Host header / URL), not a resolved address
    port: int  # the port actually connected to
    # The port written in the URL (Host header or authority), None when none was written.
    # Behind CONNECT https://h and https://h:443 differ only here.
    explicit_port: int | None = None

    @property
    def url_authority(self) -> str:
        return f"{self.host}:{self.explicit_port}" if self.explicit_port else self.host


@dataclass(frozen=True)
class Interface:
    """The kind of call (a wx API, `media` or `webview`; see calls.classify) and why."""

    api: str
    reason: str
    # A web-view navigation (document or iframe): judged by business_domains.
    navigation: bool = False


def interface_for(
    app: AppConfig, host: str, *, websocket: bool, method: str, content_type: str
) -> Interface:
    """Which wx API made this call, once calls.classify has ruled out a page load."""
    if websocket:
        return Interface("connectSocket", "a connectSocket call (WebSocket upgrade)")
    if method.upper() == "POST" and content_type.lower().lstrip().startswith("multipart/form-data"):
        return Interface("uploadFile", "an uploadFile call (multipart body)")
    name = classify_host(host).name
    listed = {api for api, entries in app.domains.items() if any(e.host == name for e in entries)}
    if method.upper() == "GET" and listed == {"downloadFile"}:
        return Interface("downloadFile", "a downloadFile call (a GET to a host listed only "
                         "for downloadFile)")
    return Interface("request", "a wx.request call")


def judge_target(
    target: Target,
    api: str,
    app: AppConfig,
    rules: ClientRules | None = None,
    allow_lan_ip: bool = False,
) -> Violation | None:
    """The first URL rule the call breaks, in the order the client checks, or None."""
    rules = rules or ClientRules()
    want = SCHEME_FOR_API[api]
    scheme = target.scheme.lower()
    if scheme != want:
        return Violation(
            "scheme.insecure", f"{api} must use {want}://, this call uses {scheme}://", api
        )
    info = classify_host(target.host)
    if info.name in FORBIDDEN_HOSTS:
        return Violation(
            "domain.forbidden", f"{info.name} is WeChat's server API; a mini program may not "
            "call it directly", api,
        )
    if info.kind is HostKind.IP:
        if not (allow_lan_ip and info.ip is not None and is_lan_ip(info.ip)):
            lan = "" if allow_lan_ip else " (allow_lan_ip is off)"
            return Violation("domain.ip_address", f"host is {info.describe()}{lan}",
                             api)
        return None
    if info.kind is HostKind.LOCALHOST:
        return Violation("domain.localhost", f"host is {info.describe()}", api)

    entries = app.domains.get(api, ())
    same_host = [e for e in entries if e.host == info.name and e.scheme == want]
    if info.trailing_dot or not same_host:
        dot = " (written with a trailing dot, which the client does not strip)" if (
            info.trailing_dot and same_host) else ""
        return Violation(
            "domain.not_listed",
            f"{info.name}{'.' if info.trailing_dot else ''} is not in the {api} domain list "
            f"({_count(entries)}){dot}",
            api,
        )
    if any(_port_ok(e, target, api, rules) for e in same_host):
        return None
    return Violation("domain.port_mismatch", _port_detail(same_host, target, api), api)


def _port_ok(entry: DomainEntry, target: Target, api: str, rules: ClientRules) -> bool:
    if entry.port is not None:
        return target.port == entry.port
    if api == "connectSocket" and rules.socket_any_port:
        return True
    # No port configured: the URL may name none, not even the default one.
    return target.explicit_port is None and target.port == DEFAULT_PORTS[entry.scheme]


def _port_detail(entries: list[DomainEntry], target: Target, api: str) -> str:
    configured = ", ".join(e.raw for e in entries)
    written = f"port {target.explicit_port}" if target.explicit_port else (
        f"port {target.port}")
    if all(e.port is None for e in entries):
        return (f"{target.url_authority} names {written}, but the {api} entry {configured} "
                "has no port, so the URL may not name one")
    return f"{target.url_authority} uses {written}; the {api} list allows {configured}"


def _count(entries: tuple[DomainEntry, ...]) -> str:
    return f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}"


def on_business_domains(host: str, app: AppConfig) -> bool:
    """The host is a business domain or a subdomain of one: the console lets a web-view
    open any subdomain of a configured business domain."""
    name = classify_host(host).name
    return any(name == e.host or name.endswith("." + e.host) for e in app.business_domains)


def judge_navigation(target: Target, app: AppConfig) -> Violation | None:
    """A web-view navigation: https, to a host on the app's business_domains, or
    `webview.not_listed`. Ports are not judged: a business domain has none."""
    scheme = target.scheme.lower()
    if scheme != "https":
        return Violation("webview.not_listed", f"a web-view opens only https:// pages, this "
                         f"navigation uses {scheme}://", "webview")
    info = classify_host(target.host)
    listed = not info.trailing_dot and info.kind is HostKind.NAME and on_business_domains(
        info.name, app)
    if listed:
        return None
    what = info.describe() if info.kind is not HostKind.NAME else (
        info.name + ("." if info.trailing_dot else ""))
    count = len(app.business_domains)
    return Violation("webview.not_listed", f"{what} is not in business_domains "
                     f"({count} entr{'y' if count == 1 else 'ies'}, subdomains included)",
                     "webview")
