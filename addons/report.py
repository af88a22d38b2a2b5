"""`wxgate report`: a violation log (SPEC §5) as one self-contained HTML page and as JUnit XML.

`wxgate audit` renders its findings with the same functions. Both renderers read the
log twice through a `Source` (a callable that opens a fresh iterator): once to count
(`LogSummary`: the counts, the hosts to add, the timeline), once to write. Nothing holds
every violation in memory, so a 100,000-line log renders in flat memory: the page is a
Jinja2 template (templates/report.html.j2, autoescaped) streamed row by row, and the
JUnit groups, written with xml.etree, are spooled to temporary files.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .events import terminal_safe
from .policy.calls import WEBVIEW
from .policy.hosts import HostKind, classify_host
from .policy.rules import APIS, RULES, Severity

Source = Callable[[], Iterator[dict[str, Any]]]

SEVERITIES = ("error", "warning", "info")
NO_APP = "(no app)"
# XML 1.0 forbids these even as character references; a URL or detail may carry them.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def open_input(path: Path, kind: str, error: type[Exception]) -> io.BufferedReader:
    """Open an input file for reading, or raise `error` with one sentence that says why.

    Only a regular file is read: a directory, FIFO, socket or device (`/dev/zero`, or a
    symlink to it) is refused. The type is checked again on the open descriptor, which is
    opened without blocking, so a FIFO can't hang the open and a swap can't slip through.
    """
    handle: io.BufferedReader | None = None
    try:
        mode = path.stat().st_mode
        if stat.S_ISREG(mode):
            handle = open(path, "rb", opener=_open_nonblocking)
            mode = os.fstat(handle.fileno()).st_mode
    except FileNotFoundError:
        raise error(f"{path} does not exist.") from None
    except OSError as exc:
        raise error(f"{path} cannot be read ({exc.strerror or exc}).") from None
    if handle is None or not stat.S_ISREG(mode):
        if handle is not None:
            handle.close()
        raise error(_not_a_file(path, mode, kind))
    os.set_blocking(handle.fileno(), True)
    return handle


def _open_nonblocking(name: str, flags: int) -> int:
    return os.open(name, flags | getattr(os, "O_NONBLOCK", 0))


_FILE_TYPES = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def _not_a_file(path: Path, mode: int, kind: str) -> str:
    what = next((name for test, name in _FILE_TYPES if test(mode)),
                "something other than a regular file")
    real = os.path.realpath(path)
    where = f" ({real})" if real != os.path.abspath(path) else ""
    return f"{path} is {what}{where}, not {kind}."


class LogError(Exception):
    """A violation log that can't be read; the message is one sentence naming file and line."""


# --- per-rule explanations --------------------------------------------------------------------

@dataclass(frozen=True)
class Explanation:
    wechat: str  # what the real client does
    fix: str  # what the developer changes


_TLS_FIX_CA = "Use a certificate from a public CA that phones trust, installed with its chain."
EXPLANATIONS: dict[str, Explanation] = {
    "scheme.insecure": Explanation(
        "wx.request, wx.uploadFile and wx.downloadFile accept only https:// URLs, and "
        "wx.connectSocket only wss://; any other scheme fails before anything is sent.",
        "Serve the API over HTTPS (sockets over WSS) and call it with https:// or wss://."),
    "domain.not_listed": Explanation(
        "Every host a mini program calls must be in the server-domain list of that interface "
        "(request, uploadFile, downloadFile, socket) in the Mini Program console; the lists are "
        "separate, so a host listed for request is refused to downloadFile.",
        "Add the domain to the right interface's list in the console and in the wxgate config, "
        "or call a host that is already listed."),
    "domain.ip_address": Explanation(
        "Server domains must be domain names: an IP address in any spelling is refused "
        "(newer base libraries allow LAN addresses only).",
        "Give the server a domain name with a certificate and list that name."),
    "domain.localhost": Explanation(
        "localhost and names that resolve to loopback cannot be server domains.",
        "Call a real, listed domain; to reach a local server in tests, map the listed name to "
        "it with wxgate's resolve: setting."),
    "domain.port_mismatch": Explanation(
        "A listed domain with a port allows only that port; a listed domain without a port "
        "allows only URLs that name no port at all, not even :443.",
        "Call the URL exactly as it is listed, or list the domain with the port the app uses "
        "(https://host:8443)."),
    "domain.forbidden": Explanation(
        "api.weixin.qq.com (WeChat's server API) may not be called from a mini program: its "
        "calls need the AppSecret, which must never ship in the client.",
        "Call api.weixin.qq.com from your own server and give the app what it needs through "
        "your API."),
    "domain.redirect_not_listed": Explanation(
        "The client re-checks every redirect hop against the domain list and fails the call "
        "before following a 3xx whose Location leaves the list.",
        "Redirect only to listed domains (or list the target), or return the final URL in the "
        "response body."),
    "domain.host_mismatch": Explanation(
        "The host the proxy would connect to (the CONNECT target or the URL's host) is not the "
        "host the request names (Host header, HTTP/2 :authority) or its TLS SNI. A real client "
        "connects to the host of its URL, so such a call is a forged or broken client; wxgate "
        "judges neither host and connects nowhere.",
        "Send the request to the host its URL names; don't tunnel to an IP address while "
        "naming a listed domain."),
    "webview.not_listed": Explanation(
        "A <web-view> may only navigate to the app's business domains (业务域名) over https; "
        "anything else shows the client's own \"non-business domain\" page instead.",
        "Add the host to the business domains in the WeChat console (and to business_domains "
        "in the config), or open the page another way."),
    "referer.rewritten": Explanation(
        "The client always sends Referer https://servicewechat.com/{appid}/{version}/"
        "page-frame.html, which the mini program cannot change (version 0 for develop, trial "
        "and review builds, devtools in DevTools, else the release number).",
        "Nothing to fix in the app: wxgate replaced the Referer so that the server saw what "
        "production sends. Make sure the server relies on no other Referer."),
    "referer.invalid": Explanation(
        "A call from the WeChat client always carries the page-frame Referer; a call without "
        "it is not what production sends.",
        "Find what set this Referer (a test script, a web-view, a DevTools setting); the server "
        "must not depend on it."),
    "referer.appid_mismatch": Explanation(
        "The Referer names the appid of the mini program that made the call.",
        "Add the appid to the config's apps, or check that the traffic comes from the app you "
        "meant to test."),
    "concurrency.exceeded": Explanation(
        "wx.request, wx.uploadFile and wx.downloadFile may have at most 10 calls in flight per "
        "mini program (together, or 10 each on newer base libraries); the client queues the "
        "extra calls, and some versions fail them with 'exceed max task count'.",
        "Limit parallel calls in the app with a request queue, batch small requests, or start "
        "them one after another."),
    "socket.exceeded": Explanation(
        "At most 5 wx.connectSocket WebSockets may be open at once; the next one fails with "
        "'max connected'.",
        "Reuse one socket per server, close sockets you no longer need (SocketTask.close), and "
        "multiplex messages over one connection."),
    "timeout.exceeded": Explanation(
        "Each interface has a networkTimeout (app.json or game.json, default and maximum "
        "60000 ms); a call without a complete response by then fails with 'fail timeout'.",
        "Make the server answer within the timeout (smaller payloads, faster handlers), or "
        "raise that interface's networkTimeout, at most to 60000 ms."),
    "background.interrupted": Explanation(
        "About 5 s after the mini program goes to background, the client interrupts the calls "
        "still running ('fail interrupted').",
        "Finish or cancel network work when onHide fires, and retry interrupted calls in "
        "onShow."),
    "background.blocked": Explanation(
        "While the mini program is in background, new network calls fail at once ('fail "
        "interrupted').",
        "Do not start calls from timers or callbacks while hidden; queue them for onShow."),
    "response.non_utf8": Explanation(
        "The client decodes text and JSON responses as UTF-8; another charset (GBK, Latin-1) "
        "arrives garbled or fails to parse.",
        "Serve UTF-8 and say so: Content-Type: application/json; charset=utf-8."),
    "response.bom": Explanation(
        "The client strips one leading UTF-8 byte-order mark; a second one stays in the data "
        "and breaks JSON parsing.",
        "Remove the extra BOMs (usually added by a template or by concatenating files)."),
    "response.status": Explanation(
        "A response with statusCode 400 or above still calls the success callback, not fail.",
        "Check res.statusCode in every success callback and handle errors there."),
    "tls.version": Explanation(
        "The client refuses a server that negotiates TLS below 1.2 ('ssl hand shake error').",
        "Enable TLS 1.2 and 1.3 on the server and switch older versions off."),
    "tls.no_legacy": Explanation(
        "Older Android phones cannot speak TLS 1.3; a server that refuses TLS 1.2 is out of "
        "their reach.",
        "Keep TLS 1.2 enabled next to TLS 1.3."),
    "tls.untrusted": Explanation(
        "The certificate chain must lead to a root CA the phone trusts (the system store; "
        "Android's WeChat trusts no user-installed CA).", _TLS_FIX_CA),
    "tls.self_signed": Explanation(
        "A self-signed certificate is never trusted by the client.", _TLS_FIX_CA),
    "tls.incomplete_chain": Explanation(
        "The client does not fetch missing intermediate certificates: the server must send "
        "the whole chain.",
        "Configure the server with the full chain (leaf followed by the intermediates)."),
    "tls.hostname": Explanation(
        "The certificate must name the host that is called (in subjectAltName).",
        "Issue a certificate that includes this host name, or a matching wildcard."),
    "tls.expired": Explanation(
        "An expired certificate fails the handshake.", "Renew the certificate."),
    "tls.not_yet_valid": Explanation(
        "A certificate whose validity has not started fails the handshake.",
        "Check the certificate's start date and the server's clock."),
    "tls.distrusted_issuer": Explanation(
        "Certificates issued by distrusted CAs (WoSign, StartCom) are refused.",
        "Replace the certificate with one from a trusted CA."),
    "tls.ats": Explanation(
        "On iOS Apple's App Transport Security applies: TLS 1.2 or later, a forward-secret "
        "(ECDHE) cipher, SHA-256 or stronger signatures, RSA of 2048 bits or ECC of 256 bits, "
        "validity of 825 days at most, DNS names in subjectAltName and the serverAuth extended "
        "key usage. An iPhone fails the call; other platforms may pass it.",
        "Fix the server setting or reissue the certificate for the ATS rule named in the "
        "detail."),
    "config.scheme": Explanation(
        "The console accepts only https:// entries (wss:// for socket) as server domains.",
        "Write the entry with the right scheme."),
    "config.ip_address": Explanation(
        "The console refuses IP addresses as server domains.", "List a domain name."),
    "config.localhost": Explanation(
        "The console refuses localhost as a server domain.", "List a real domain name."),
    "config.forbidden": Explanation(
        "The console refuses api.weixin.qq.com as a server domain.",
        "Remove it; call it from your own server."),
    "config.too_many_domains": Explanation(
        "The console accepts at most 20 domains per interface (rules.max_domains).",
        "Consolidate hosts behind fewer domains."),
    "config.timeout": Explanation(
        "networkTimeout may not exceed 60000 ms (rules.max_timeout_ms).",
        "Lower the timeout to the allowed maximum."),
    "config.invalid": Explanation(
        "A server domain is scheme://host[:port] with no path, wildcard or user part.",
        "Rewrite the entry in that form."),
    "wxgate.error": Explanation(
        "Not a WeChat rule: wxgate failed while judging the call and, failing closed, "
        "counted it as a violation.",
        "Report it with the log line; the detail names the failing check."),
}


def explanation(rule: str) -> Explanation:
    """The explanation of a rule id; a rule added later without text still gets its summary."""
    if rule in EXPLANATIONS:
        return EXPLANATIONS[rule]
    summary = RULES[rule].summary if rule in RULES else "no explanation is recorded for this rule"
    return Explanation(summary[:1].upper() + summary[1:] + ".", "See SPEC §4 for this rule.")


# --- reading a log ----------------------------------------------------------------------------

# A line longer than this is refused unread: a log line holds a few cut fields
# (log.max_field_bytes), and JSON costs many times its size in memory once parsed.
MAX_LINE_BYTES = 8 * 1024 * 1024


def iter_log(path: Path, warnings: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """The violation events of a JSONL log, in order; LogError for anything else.

    A last line without its newline that does not parse is what a proxy killed mid-write
    leaves: it is skipped with a warning instead of refusing the whole log. What a log
    never holds is refused with one sentence: a line over MAX_LINE_BYTES, nesting deeper
    than the JSON reader follows, a number too long to convert.
    """
    handle = open_input(path, "a violation log", LogError)
    with handle:
        number = 0
        while raw := handle.readline(MAX_LINE_BYTES + 1):
            number += 1
            if len(raw) > MAX_LINE_BYTES:
                raise LogError(f"{path} line {number} is longer than "
                               f"{MAX_LINE_BYTES // (1024 * 1024)} MiB, so the file is not "
                               "a wxgate violation log.")
            if not raw.strip():
                continue
            event = _parse_line(path, number, raw, warnings)
            if event is None:
                continue
            if not isinstance(event, dict) or not isinstance(event.get("event"), str):
                raise LogError(f"{path} line {number} has no \"event\" field, so the file is "
                               "not a wxgate violation log.")
            if event["event"] != "violation":
                continue
            if not isinstance(event.get("rule"), str):
                raise LogError(f"{path} line {number} is a violation without a \"rule\" field.")
            yield _flat(event)


def _parse_line(path: Path, number: int, raw: bytes, warnings: list[str] | None) -> Any:
    """One line's JSON value; None for a last line cut short, LogError for the rest."""
    not_log = "so the file is not a wxgate violation log"
    try:
        return json.loads(raw)
    except RecursionError:
        raise LogError(f"{path} line {number} nests arrays or objects too deeply to read, "
                       f"{not_log}.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        if not raw.endswith(b"\n"):
            if warnings is not None:
                warnings.append(f"{path} line {number} is cut short (the proxy "
                                "stopped while writing it) and was skipped.")
            return None
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise LogError(f"{path} line {number} is not a JSON object ({reason}), {not_log}."
                       ) from None
    except ValueError:
        # The json module's only other error: an integer beyond int_max_str_digits.
        raise LogError(f"{path} line {number} holds a number of more than "
                       f"{sys.get_int_max_str_digits()} digits, {not_log}.") from None


def _flat(event: dict[str, Any]) -> dict[str, Any]:
    """The event with any nested value as its JSON text: the report shows each field as
    text, and str() of a value nested hundreds deep could exhaust the stack."""
    for key, value in event.items():
        if isinstance(value, dict | list):
            try:
                event[key] = json.dumps(value, ensure_ascii=False)
            except (RecursionError, ValueError):
                event[key] = "(a value nested too deeply to show)"
    return event


# --- counting ---------------------------------------------------------------------------------

NO_DEVICE = "(unknown)"
# Distinct hosts and devices the page lists; a hostile log can name millions, counted apart.
MAX_LISTED = 1000


@dataclass
class LogSummary:
    total: int = 0
    by_severity: Counter[str] = field(default_factory=Counter)
    by_rule: dict[str, Counter[str]] = field(default_factory=dict)  # rule -> severity counts
    by_app: dict[str, Counter[str]] = field(default_factory=dict)  # app -> severity counts
    by_group: Counter[tuple[str, str]] = field(default_factory=Counter)  # (app, rule)
    failing_by_group: Counter[tuple[str, str]] = field(default_factory=Counter)  # not info
    by_device: dict[str, Counter[str]] = field(default_factory=dict)  # device -> severity
    platforms: dict[str, Counter[str]] = field(default_factory=dict)  # device -> platforms
    devices_not_listed: int = 0  # violations of devices beyond MAX_LISTED
    hosts: HostsToAdd = field(default_factory=lambda: HostsToAdd())
    timeline: Timeline = field(default_factory=lambda: Timeline())
    first: str | None = None
    last: str | None = None

    def add(self, event: dict[str, Any]) -> None:
        severity = severity_of(event)
        rule, app = str(event["rule"]), app_of(event)
        self.total += 1
        self.by_severity[severity] += 1
        self.by_rule.setdefault(rule, Counter())[severity] += 1
        self.by_app.setdefault(app, Counter())[severity] += 1
        self.by_group[(app, rule)] += 1
        if severity != "info":
            self.failing_by_group[(app, rule)] += 1
        device = device_of(event)
        if device in self.by_device or len(self.by_device) < MAX_LISTED:
            self.by_device.setdefault(device, Counter())[severity] += 1
            if event.get("platform"):
                self.platforms.setdefault(device, Counter())[str(event["platform"])] += 1
        else:
            self.devices_not_listed += 1
        self.hosts.add(event, app)
        stamp = event.get("timestamp")
        if isinstance(stamp, str):
            self.first = stamp if self.first is None else min(self.first, stamp)
            self.last = stamp if self.last is None else max(self.last, stamp)
            self.timeline.add(stamp, rule)

    def at_or_above(self, threshold: str) -> int:
        """Violations of `threshold` severity or worse."""
        rank = SEVERITIES.index(threshold)
        return sum(self.by_severity[s] for s in SEVERITIES[: rank + 1])


def severity_of(event: dict[str, Any]) -> str:
    value = event.get("severity")
    if value in SEVERITIES:
        return str(value)
    rule = RULES.get(str(event.get("rule")))
    return rule.severity.value if rule else Severity.ERROR.value


def app_of(event: dict[str, Any]) -> str:
    return str(event.get("appid") or NO_APP)


def device_of(event: dict[str, Any]) -> str:
    """The device a violation came from: its client address (SPEC §3)."""
    return str(event.get("client") or NO_DEVICE)


def summarize(source: Source) -> LogSummary:
    summary = LogSummary()
    for event in source():
        summary.add(event)
    return summary


# --- hosts to add -----------------------------------------------------------------------------

# The console's lists, by the interface a violation names, as the console labels them.
CONSOLE_LISTS = {
    "request": "request合法域名 (wx.request)",
    "uploadFile": "uploadFile合法域名 (wx.uploadFile)",
    "downloadFile": "downloadFile合法域名 (wx.downloadFile)",
    "connectSocket": "socket合法域名 (wx.connectSocket)",
    WEBVIEW: "业务域名, business domains (<web-view>)",
}
# Rules a whitelist entry fixes: the host is a name the console takes, just not listed.
_LISTABLE = frozenset({"domain.not_listed", "domain.port_mismatch"})
# Hosts no entry can fix, and why.
NEVER_LISTED = {
    "scheme.insecure": "http:// and ws:// are never listed: the console takes https:// "
                       "(wss:// for sockets) only, so serve it over TLS",
    "domain.ip_address": "an IP address: the console lists domain names only",
    "domain.localhost": "localhost: on a phone it is the phone itself, and the console "
                        "refuses it",
    "domain.forbidden": "WeChat's server API: call it from your own server, never from "
                        "the mini program",
    "trailing_dot": "written with a trailing dot, which the client does not strip: call "
                    "the name without it",
    "webview.not_https": "a web-view opens only https:// pages",
}
_SCHEME_DEFAULT_PORT = {"https": 443, "wss": 443, "http": 80, "ws": 80}


def _origin(scheme: str, host: str, port: Any) -> str:
    """scheme://host[:port] with the port only when it is not the scheme's default."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if isinstance(port, int) and not isinstance(port, bool) and \
            port != _SCHEME_DEFAULT_PORT.get(scheme):
        return f"{scheme}://{shown}:{port}"
    return f"{scheme}://{shown}"


def _where(event: dict[str, Any]) -> tuple[str, str, Any] | None:
    """(scheme, host, port) the call went to: the redirect's target for a redirect."""
    if event.get("rule") == "domain.redirect_not_listed" and isinstance(
            event.get("location"), str):
        try:
            target = urlsplit(event["location"])
            return target.scheme.lower(), (target.hostname or "").lower(), target.port
        except ValueError:
            return None
    url, host = event.get("url"), event.get("host")
    if not isinstance(url, str) or not isinstance(host, str):
        return None
    return url.split("://", 1)[0].lower() if "://" in url else "", host.lower(), \
        event.get("port")


@dataclass
class HostEntry:
    calls: int = 0
    example: str = ""
    apps: set[str] = field(default_factory=set)


@dataclass
class HostsToAdd:
    """What the developer adds in the console, per app and list; and what no entry fixes."""

    # (app, list) -> console entry -> calls
    entries: dict[tuple[str, str], dict[str, HostEntry]] = field(default_factory=dict)
    # (origin, reason) -> calls
    never: dict[tuple[str, str], HostEntry] = field(default_factory=dict)
    not_listed: int = 0  # calls to hosts beyond MAX_LISTED distinct ones

    def add(self, event: dict[str, Any], app: str) -> None:
        found = self.classify(event)
        if found is None:
            return
        kind, key, origin = found
        table: dict[Any, HostEntry]
        if kind == "add":
            table = self.entries.setdefault((app, key), {})
            slot: Any = origin
        else:
            table, slot = self.never, (origin, key)
        entry = table.get(slot)
        if entry is None:
            if self.size() >= MAX_LISTED:
                self.not_listed += 1
                return
            entry = table[slot] = HostEntry(example=str(event.get("url") or ""))
        entry.calls += 1
        entry.apps.add(app)

    def size(self) -> int:
        return len(self.never) + sum(len(t) for t in self.entries.values())

    @staticmethod
    def classify(event: dict[str, Any]) -> tuple[str, str, str] | None:
        """("add", console list, entry) or ("never", reason key, origin), or None when the
        violation is not about where the call went."""
        rule, api = event.get("rule"), event.get("api")
        if rule == "domain.redirect_not_listed":
            rule = event.get("hop_rule")
        where = _where(event)
        if where is None or not where[1]:
            return None
        scheme, host, port = where
        if rule == "webview.not_listed":
            if scheme != "https":
                return "never", "webview.not_https", _origin(scheme, host, port)
            kind = classify_host(host).kind
            if kind is not HostKind.NAME:
                reason = "domain.ip_address" if kind is HostKind.IP else "domain.localhost"
                return "never", reason, _origin(scheme, host, port)
            return "add", WEBVIEW, f"https://{host.rstrip('.')}"
        if rule in NEVER_LISTED:
            return "never", str(rule), _origin(scheme, host, port)
        if rule in _LISTABLE and api in APIS:
            if host.endswith("."):
                return "never", "trailing_dot", _origin(scheme, host, port)
            want = "wss" if api == "connectSocket" else "https"
            return "add", str(api), _origin(want, host, port)
        return None


# --- violations over time ---------------------------------------------------------------------

# Bucket widths in seconds, each a multiple of the one before, so that buckets merge cleanly
# into coarser ones and into the chart's bars.
STEPS_S = (1, 2, 10, 30, 60, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400)


def _step_after(step: int) -> int:
    later = [s for s in STEPS_S if s > step]
    return later[0] if later else step * 2


@dataclass
class Timeline:
    """Violations per rule per time bucket, in bounded memory: when the buckets would pass
    MAX_BUCKETS, they merge into wider ones (1 s, 2 s, 10 s, ... 1 day, then doubling)."""

    MAX_BUCKETS = 2048
    step_s: int = 1
    buckets: dict[int, Counter[str]] = field(default_factory=dict)  # start // step -> rules

    def add(self, stamp: str, rule: str) -> None:
        try:
            when = datetime.fromisoformat(stamp)
        except ValueError:
            return
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        self.buckets.setdefault(int(when.timestamp()) // self.step_s, Counter())[rule] += 1
        while len(self.buckets) > self.MAX_BUCKETS:
            self.widen(_step_after(self.step_s))

    def widen(self, step_s: int) -> None:
        merged: dict[int, Counter[str]] = {}
        for index, counts in self.buckets.items():
            merged.setdefault(index * self.step_s // step_s, Counter()).update(counts)
        self.buckets, self.step_s = merged, step_s

    def span(self) -> tuple[int, int] | None:
        """The first bucket's start and the last bucket's end, in epoch seconds."""
        if not self.buckets:
            return None
        return min(self.buckets) * self.step_s, (max(self.buckets) + 1) * self.step_s

    def binned(self, bars: int) -> tuple[int, int, list[Counter[str]]]:
        """(start, seconds per bar, counts per bar): at most about `bars` bars."""
        span = self.span()
        assert span is not None
        step = self.step_s
        while (span[1] - span[0]) / step > bars:
            step = _step_after(step)
        start = span[0] // step * step
        count = -(-(span[1] - start) // step)
        out: list[Counter[str]] = [Counter() for _ in range(count)]
        for index, counts in self.buckets.items():
            out[(index * self.step_s - start) // step].update(counts)
        return start, step, out


@dataclass
class ReportContext:
    """What the page says besides the violations: where they came from and what was not judged."""

    title: str = "wxgate report"
    inputs: list[str] = field(default_factory=list)
    # Plain sentences shown above the table (input problems, what an audit could not judge).
    notes: list[str] = field(default_factory=list)
    # rule id -> why it was not judged; JUnit marks these testcases skipped.
    not_judged: dict[str, str] = field(default_factory=dict)
    # Apps that get a testcase per rule even without violations (the config's apps).
    apps: list[str] = field(default_factory=list)
    # Rules that get a (passing) testcase per app even without violations.
    rules: list[str] = field(default_factory=list)
    generated: str = field(default_factory=lambda: datetime.now(UTC).strftime(
        "%Y-%m-%d %H:%M:%S UTC"))


# --- HTML -------------------------------------------------------------------------------------

if TYPE_CHECKING:
    import jinja2

TEMPLATES = Path(__file__).resolve().parent / "templates"
CHART_BARS = 60
CHART_LANES = 10  # rules with a row of their own; the rest share one


@functools.cache
def _environment() -> jinja2.Environment:
    # Imported here, for the HTML report alone: an audit that writes none never loads it.
    import jinja2

    # Autoescaping: every value from the log (a client wrote part of it) is text, never markup.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True,
        lstrip_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def _static(name: str) -> str:
    """Our own CSS or script, inlined as it is (the template marks it safe): the page
    fetches nothing."""
    return (TEMPLATES / name).read_text(encoding="utf-8")


def _time(stamp: Any) -> str:
    text = str(stamp or "")
    return text.replace("T", " ").removesuffix("Z")


def _ordered_rules(summary: LogSummary) -> list[str]:
    worst = {rule: min(SEVERITIES.index(s) for s in counts) for rule, counts in
             summary.by_rule.items()}
    return sorted(summary.by_rule, key=lambda r: (worst[r], -sum(summary.by_rule[r].values()), r))


def _worst(counts: Counter[str]) -> str:
    return next((s for s in SEVERITIES if counts[s]), "info")


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Lane:
    label: str
    total: int
    severity: str
    top: float
    peak: int
    bars: list[Bar]


@dataclass(frozen=True)
class Chart:
    """The time chart as drawn: one row per rule, bars per time slice, in SVG units."""

    width: int
    height: int
    plot_left: int
    plot_right: int
    axis_y: float
    lanes: list[Lane]
    ticks: list[tuple[float, str]]
    caption: str


_LANE_HEIGHT = 30
_CHART_WIDTH, _PLOT_LEFT, _PLOT_RIGHT = 1000, 250, 955


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if unit == 'day' and n != 1 else ''}"
    return f"{seconds} s"


def _clock(epoch: int, span: int, step: int) -> str:
    """A time on the chart's axis (UTC), as precise as the chart's span needs."""
    try:
        when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=epoch)
    except OverflowError:  # a bar's edge past year 1 or 9999 (a hostile log's timestamps)
        return "(out of range)"
    if span > 366 * 86400:
        return when.strftime("%Y-%m-%d")
    if span > 86400:
        return when.strftime("%m-%d %H:%M")
    return when.strftime("%H:%M:%S" if step < 60 else "%H:%M")


def build_chart(summary: LogSummary) -> Chart | None:
    """Violations per rule over time: each rule a row scaled to its own peak, so that a
    steady trickle shows next to a burst; every bar has a tooltip (an SVG title)."""
    if summary.timeline.span() is None:
        return None
    start, step, bins = summary.timeline.binned(CHART_BARS)
    rules = _ordered_rules(summary)
    lanes_of: list[tuple[str, list[str], str]] = [
        (rule, [rule], _worst(summary.by_rule[rule])) for rule in rules[:CHART_LANES]]
    if len(rules) > CHART_LANES:
        rest = rules[CHART_LANES:]
        lanes_of.append((f"{len(rest)} other rules", rest, "other"))
    width = (_PLOT_RIGHT - _PLOT_LEFT) / len(bins)
    span = len(bins) * step
    lanes = []
    for row, (label, members, severity) in enumerate(lanes_of):
        counts = [sum(b[r] for r in members) for b in bins]
        peak = max(counts)
        top = 8 + row * _LANE_HEIGHT
        bars = []
        for i, n in enumerate(counts):
            if not n:
                continue
            height = max(2.0, (_LANE_HEIGHT - 10) * n / peak)
            begin = start + i * step
            title = (f"{_clock(begin, span, step)}–{_clock(begin + step, span, step)} UTC: "
                     f"{n} {label}")
            bars.append(Bar(round(_PLOT_LEFT + i * width, 2), round(top + _LANE_HEIGHT - 6
                                                                    - height, 2),
                            round(max(width - 1, 1.0), 2), round(height, 2), title))
        lanes.append(Lane(label, sum(counts), severity, top, peak, bars))
    axis_y = 8 + len(lanes) * _LANE_HEIGHT
    ticks = []
    for k in range(5):
        i = round(k * len(bins) / 4)
        ticks.append((round(_PLOT_LEFT + i * width, 2), _clock(start + i * step, span, step)))
    caption = (f"One bar is {_duration(step)} (times in UTC); each row is scaled to its own "
               "peak, shown at its right. Hover a bar for its count.")
    return Chart(_CHART_WIDTH, int(axis_y) + 26, _PLOT_LEFT, _PLOT_RIGHT, axis_y, lanes,
                 ticks, caption)


@dataclass(frozen=True)
class HostRow:
    entry: str
    calls: int
    example: str
    apps: str = ""
    reason: str = ""


def _hosts_view(summary: LogSummary) -> dict[str, Any]:
    by_app: dict[str, list[dict[str, Any]]] = {}
    for (app, api), entries in sorted(summary.hosts.entries.items(),
                                      key=lambda item: (item[0][0], list(CONSOLE_LISTS)
                                                        .index(item[0][1]))):
        rows = [HostRow(entry, found.calls, found.example) for entry, found in
                sorted(entries.items(), key=lambda item: (-item[1].calls, item[0]))]
        by_app.setdefault(app, []).append({
            "api": api, "label": CONSOLE_LISTS[api], "rows": rows,
            "paste": ";".join(row.entry for row in rows)})
    never = [HostRow(origin, found.calls, found.example, ", ".join(sorted(found.apps)),
                     NEVER_LISTED[reason])
             for (origin, reason), found in sorted(summary.hosts.never.items(),
                                                   key=lambda item: (-item[1].calls, item[0]))]
    return {"apps": by_app, "never": never, "not_listed": summary.hosts.not_listed,
            "max_listed": MAX_LISTED}


def _rows(source: Source) -> Iterator[dict[str, Any]]:
    for event in source():
        yield {
            "time": _time(event.get("timestamp")), "stamp": event.get("timestamp") or "",
            "app": app_of(event), "api": event.get("api") or "",
            "method": event.get("method") or "", "url": event.get("url") or "",
            "rule": str(event["rule"]), "severity": severity_of(event),
            "action": event.get("action") or "", "detail": event.get("detail") or "",
            "err_msg": event.get("errMsg") or "", "device": device_of(event),
            "platform": event.get("platform") or "",
        }


def _explanations(rules: list[str], summary: LogSummary) -> list[dict[str, Any]]:
    out = []
    for rule in rules:
        text = explanation(rule)
        definition = RULES.get(rule)
        errmsg = definition.err_msg.format(api="{api}") if definition and \
            definition.err_msg else "(the call is not failed)"
        out.append({"rule": rule, "wechat": text.wechat, "fix": text.fix, "errmsg": errmsg,
                     "severities": [s for s in SEVERITIES if summary.by_rule[rule][s]]})
    return out


def write_html(out: IO[str], source: Source, summary: LogSummary, context: ReportContext) -> None:
    """One self-contained page: inline CSS, SVG and script, no URL to fetch, readable
    offline and without JavaScript (the script only filters the table)."""
    rules = _ordered_rules(summary)
    devices = sorted(summary.by_device, key=lambda d: (-sum(summary.by_device[d].values()), d))
    page = _environment().get_template("report.html.j2").generate(
        title=context.title, inputs=", ".join(context.inputs) or "-",
        generated=context.generated,
        first=_time(summary.first) if summary.first else "",
        last=_time(summary.last) if summary.last else "",
        severities=SEVERITIES, summary=summary, rules=rules,
        rule_counts={r: sum(summary.by_rule[r].values()) for r in rules},
        apps=sorted(summary.by_app), devices=devices,
        platform_of={d: summary.platforms[d].most_common(1)[0][0]
                     for d in devices if summary.platforms.get(d)},
        hosts=_hosts_view(summary), chart=build_chart(summary), notes=context.notes,
        rows=_rows(source), explanations=_explanations(rules, summary),
        not_judged=sorted(context.not_judged.items()),
        css=_static("report.css"), script=_static("report.js"))
    for chunk in page:
        out.write(chunk)


# --- JUnit ------------------------------------------------------------------------------------

_SPOOL_MARK = re.compile(r"<!--wxgate-spool-(\d+)-->")


def _xml_safe(value: Any) -> str:
    """Text XML can carry: the characters XML 1.0 forbids become U+FFFD."""
    return _XML_INVALID.sub("\ufffd", "" if value is None else str(value))


def _element(tag: str, text: str | None = None, **attrs: Any) -> ET.Element:
    element = ET.Element(tag, {key: _xml_safe(value) for key, value in attrs.items()})
    if text:
        element.text = _xml_safe(text)
    return element


def _xml(element: ET.Element) -> str:
    return ET.tostring(element, encoding="unicode")


def _xml_text(text: str) -> str:
    """`text` as XML character data, escaped by etree."""
    return _xml(_element("t", text))[3:-4] if text else ""


def _describe(event: dict[str, Any]) -> str:
    lines = [f"{event.get('method') or ''} {event.get('url') or ''}".strip()]
    for key in ("timestamp", "api", "action", "detail", "errMsg", "errno", "platform",
                "client", "flow_id", "source"):
        if event.get(key) is not None:
            lines.append(f"{key}: {event[key]}")
    return "\n".join(lines)


def write_junit(out: IO[str], source: Source, summary: LogSummary, context: ReportContext) -> None:
    """testsuites > testsuite per app > testcase per rule; a <failure> per error or warning.

    Info-level violations never fail a build: their testcase passes and lists them in
    <system-out>. A rule the input could not judge is a skipped testcase. Every element is
    written by xml.etree; each group's failures are spooled to their own temporary file and
    spliced into their testcase, so that a large log renders in flat memory.
    """
    apps = sorted(set(summary.by_app) | set(context.apps))
    rules = sorted(set(summary.by_rule) | set(context.rules) | set(context.not_judged))
    if not apps:
        apps = [NO_APP]
    spools: dict[tuple[str, str, str], IO[str]] = {}
    index: Counter[tuple[str, str]] = Counter()
    try:
        for event in source():
            group = (app_of(event), str(event["rule"]))
            severity = severity_of(event)
            kind = "out" if severity == "info" else "failure"
            spool = spools.get((*group, kind))
            if spool is None:
                spool = tempfile.SpooledTemporaryFile(max_size=256 * 1024, mode="w+",
                                                      encoding="utf-8")
                spools[(*group, kind)] = spool
            if kind == "failure":
                # Some CI systems show only a testcase's first failure: number them.
                index[group] += 1
                count = summary.failing_by_group[group]
                message = f"[{index[group]}/{count}] {severity}: {event.get('detail') or ''}"
                body = f"{_describe(event)}\nfix: {explanation(group[1]).fix}"
                # The spool sits where its testcase's first child goes, indented there.
                spool.write(("\n      " if index[group] > 1 else "")
                            + _xml(_element("failure", body, type=event["rule"],
                                            message=message)))
            else:
                spool.write(_xml_text(_describe(event) + "\n\n"))

        failing = {(a, r) for (a, r, kind) in spools if kind == "failure"}
        failures_of: Counter[str] = Counter()
        for app, _rule in failing:
            failures_of[app] += 1
        skipped = {r for r in context.not_judged if r not in summary.by_rule}
        root = _element("testsuites", name=context.title, tests=len(apps) * len(rules),
                        failures=len(failing), errors=0, skipped=len(skipped) * len(apps),
                        time=0)
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
        start, end = _tags(root)
        out.write(start + "\n")
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        for app in apps:
            # One suite at a time: its testcases in memory, the spooled failures spliced in.
            suite = _element("testsuite", name=f"wxgate.{app}", tests=len(rules),
                             failures=failures_of[app], errors=0, skipped=len(skipped),
                             time=0, timestamp=stamp)
            marks: list[IO[str]] = []
            outputs: list[ET.Element] = []
            for rule in rules:
                case = ET.SubElement(suite, "testcase", {
                    "classname": _xml_safe(f"wxgate.{app}"), "name": _xml_safe(rule),
                    "time": "0"})
                failure = spools.get((app, rule, "failure"))
                info = spools.get((app, rule, "out"))
                if failure is not None:
                    case.append(ET.Comment(f"wxgate-spool-{len(marks)}"))
                    marks.append(failure)
                elif rule in skipped:
                    case.append(_element("skipped", message=context.not_judged[rule]))
                if info is not None:
                    system_out = ET.SubElement(case, "system-out")
                    system_out.append(ET.Comment(f"wxgate-spool-{len(marks)}"))
                    marks.append(info)
                    outputs.append(system_out)
            ET.indent(suite, space="  ", level=1)
            for system_out in outputs:  # its text is the spool's, without indentation
                system_out.text = system_out[0].tail = None
            for number, piece in enumerate(_SPOOL_MARK.split("  " + _xml(suite))):
                if number % 2:
                    spool = marks[int(piece)]
                    spool.seek(0)
                    shutil.copyfileobj(spool, out)
                else:
                    out.write(piece)
            out.write("\n")
        out.write(end + "\n")
    finally:
        for spool in spools.values():
            spool.close()


def _tags(element: ET.Element) -> tuple[str, str]:
    """An element's start and end tags, as etree writes them."""
    element.append(ET.Comment("wxgate-spool-0"))
    start, end = _SPOOL_MARK.split(_xml(element))[::2]
    return start, end


# --- writing files ----------------------------------------------------------------------------

class OutputError(Exception):
    """An output file can't be written; the message is one sentence."""


def write_outputs(source: Source, summary: LogSummary, context: ReportContext,
                  html_path: str | None, junit_path: str | None) -> None:
    for path, writer in ((html_path, write_html), (junit_path, write_junit)):
        if not path:
            continue
        try:
            with open(path, "w", encoding="utf-8", newline="\n") as out:
                writer(out, source, summary, context)
        except OSError as exc:
            raise OutputError(f"{path} cannot be written ({exc.strerror or exc}).") from None


def summary_lines(summary: LogSummary) -> list[str]:
    """The plain-text summary printed on the terminal."""
    by = ", ".join(f"{summary.by_severity[s]} {s}" for s in SEVERITIES)
    lines = [f"{summary.total} violation{'s' if summary.total != 1 else ''}: {by}"]
    for rule in _ordered_rules(summary):
        counts = summary.by_rule[rule]
        worst = next(s for s in SEVERITIES if counts[s])
        apps = sorted(app for (app, r) in summary.by_group if r == rule)
        # Rule ids and appids come from the log, which a client partly wrote.
        lines.append(f"  {worst:<7} {terminal_safe(rule):<28} {sum(counts.values()):>7}  "
                     f"{terminal_safe(', '.join(apps))}")
    return lines


# --- the command ------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`wxgate report`'s arguments, on the parser `cli` made for it."""
    parser.description = ("Render a wxgate violation log as one self-contained HTML page "
                          "and/or JUnit XML; without --html or --junit, print a summary.")
    parser.add_argument("log", metavar="LOG.jsonl", help="the violation log (log.path)")
    parser.add_argument("--html", metavar="OUT", help="write the HTML report here")
    parser.add_argument("--junit", metavar="OUT", help="write JUnit XML here")
    parser.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    path = Path(args.log)
    warnings: list[str] = []
    try:
        summary = summarize(lambda: iter_log(path, warnings))
        context = ReportContext(title="wxgate report", inputs=[str(path)], notes=warnings)
        write_outputs(lambda: iter_log(path), summary, context, args.html, args.junit)
    except (LogError, OutputError) as exc:
        print(f"wxgate report: {terminal_safe(str(exc))}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"wxgate report: {terminal_safe(warning)}", file=sys.stderr)
    for line in summary_lines(summary):
        print(line)
    for label, written in (("HTML", args.html), ("JUnit", args.junit)):
        if written:
            print(f"{label} report: {written}")
    return 0
