"""`wxgate report`: a violation log (SPEC §5) as one self-contained HTML page and as JUnit XML.

`wxgate audit` renders its findings with the same functions. Both renderers read the
log twice through a `Source` (a callable that opens a fresh iterator): once to count,
once to write. Nothing holds every violation in memory, so a 100,000-line log renders
in flat memory; the JUnit groups are spooled to temporary files.
"""

from __future__ import annotations

import argparse
import html
import io
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from .events import terminal_safe
from .policy.rules import RULES, Severity

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

@dataclass
class Summary:
    total: int = 0
    by_severity: Counter[str] = field(default_factory=Counter)
    by_rule: dict[str, Counter[str]] = field(default_factory=dict)  # rule -> severity counts
    by_app: dict[str, Counter[str]] = field(default_factory=dict)  # app -> severity counts
    by_group: Counter[tuple[str, str]] = field(default_factory=Counter)  # (app, rule)
    failing_by_group: Counter[tuple[str, str]] = field(default_factory=Counter)  # not info
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
        stamp = event.get("timestamp")
        if isinstance(stamp, str):
            self.first = stamp if self.first is None else min(self.first, stamp)
            self.last = stamp if self.last is None else max(self.last, stamp)

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


def summarize(source: Source) -> Summary:
    summary = Summary()
    for event in source():
        summary.add(event)
    return summary


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

_CSS = """
:root{--err:#b42318;--warn:#b54708;--info:#175cd3;--line:#e4e7ec;--muted:#667085;--bg:#f9fafb}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
 margin:0;color:#101828;background:var(--bg)}
header{background:#101828;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#d0d5dd;font-size:13px}
main{padding:20px 28px;max-width:1600px}
h2{font-size:17px;margin:28px 0 10px}
.cards{display:flex;gap:14px;flex-wrap:wrap}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 18px;
 min-width:150px}
.card .n{font-size:28px;font-weight:700}
.card .l{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card.error .n{color:var(--err)}.card.warning .n{color:var(--warn)}.card.info .n{color:var(--info)}
.grid{display:flex;gap:18px;flex-wrap:wrap;align-items:flex-start}
.grid>div{flex:1 1 380px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid var(--line)}
th,td{text-align:left;padding:6px 9px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:#f2f4f7;font-size:12px;color:#344054;position:sticky;top:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.sev{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600}
.sev.error{background:#fee4e2;color:var(--err)}.sev.warning{background:#fef0c7;color:var(--warn)}
.sev.info{background:#d1e9ff;color:var(--info)}
.url{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.wrap{overflow-x:auto}
#violations{table-layout:fixed;min-width:1200px;font-size:13px}
#violations td{overflow-wrap:break-word}
#violations td.url{overflow-wrap:anywhere}
td.time{font-variant-numeric:tabular-nums}
td.app{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.notes{background:#fffaeb;border:1px solid #fedf89;border-radius:8px;padding:10px 16px}
.notes li{margin:3px 0}
.filters{display:flex;gap:10px;flex-wrap:wrap;margin:0 0 10px;align-items:center}
.filters input,.filters select{font:inherit;padding:5px 8px;border:1px solid #d0d5dd;
 border-radius:6px;background:#fff}
.filters input{min-width:320px}
.muted{color:var(--muted)}
.rule{background:#fff;border:1px solid var(--line);border-radius:8px;padding:10px 16px;
 margin:0 0 10px}
.rule h3{margin:0 0 6px;font-size:15px}
.rule dl{margin:0;display:grid;grid-template-columns:110px 1fr;gap:4px 12px}
.rule dt{color:var(--muted)}.rule dd{margin:0}
a{color:#175cd3}
"""

_JS = """
(function(){
  var q=document.getElementById('q'),sev=document.getElementById('f-sev'),
      rule=document.getElementById('f-rule'),app=document.getElementById('f-app'),
      shown=document.getElementById('shown'),table=document.getElementById('violations');
  if(!table){return;}
  var rows=table.tBodies[0].rows,text=null;
  function apply(){
    if(text===null){text=[];for(var i=0;i<rows.length;i++){
      text.push(rows[i].textContent.toLowerCase());}}
    var t=q.value.trim().toLowerCase(),s=sev.value,r=rule.value,a=app.value,n=0;
    for(var i=0;i<rows.length;i++){
      var d=rows[i].dataset;
      var ok=(!s||d.sev===s)&&(!r||d.rule===r)&&(!a||d.app===a)&&(!t||text[i].indexOf(t)>=0);
      rows[i].style.display=ok?'':'none';if(ok){n++;}
    }
    shown.textContent=n;
  }
  // A link can carry a filter: report.html#rule=domain.not_listed&sev=error&q=evil
  var given={};
  location.hash.replace(/^#/,'').split('&').forEach(function(kv){
    var i=kv.indexOf('=');if(i>0){given[kv.slice(0,i)]=decodeURIComponent(kv.slice(i+1));}
  });
  if(given.q){q.value=given.q;}if(given.sev){sev.value=given.sev;}
  if(given.rule){rule.value=given.rule;}if(given.app){app.value=given.app;}
  if(given.q||given.sev||given.rule||given.app){apply();}
  var timer=null;
  q.addEventListener('input',function(){clearTimeout(timer);timer=setTimeout(apply,120);});
  [sev,rule,app].forEach(function(el){el.addEventListener('change',apply);});
  document.querySelectorAll('[data-filter-rule]').forEach(function(el){
    el.addEventListener('click',function(ev){ev.preventDefault();
      rule.value=el.getAttribute('data-filter-rule');apply();
      table.scrollIntoView();});
  });
})();
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _sev_badge(severity: str) -> str:
    return f'<span class="sev {_e(severity)}">{_e(severity)}</span>'


def _time(stamp: Any) -> str:
    text = str(stamp or "")
    return text.replace("T", " ").removesuffix("Z")


def _ordered_rules(summary: Summary) -> list[str]:
    worst = {rule: min(SEVERITIES.index(s) for s in counts) for rule, counts in
             summary.by_rule.items()}
    return sorted(summary.by_rule, key=lambda r: (worst[r], -sum(summary.by_rule[r].values()), r))


def write_html(out: IO[str], source: Source, summary: Summary, context: ReportContext) -> None:
    """One self-contained page: inline CSS and JS, no URL to fetch, readable offline."""
    w = out.write
    w("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">")
    w(f"<title>{_e(context.title)}</title><style>{_CSS}</style></head><body>\n")
    inputs = ", ".join(context.inputs) or "-"
    span = (f"; violations from {_e(_time(summary.first))} to {_e(_time(summary.last))}"
            if summary.first else "")
    w(f"<header><h1>{_e(context.title)}</h1><p>Input: {_e(inputs)}. Generated "
      f"{_e(context.generated)}{span}.</p></header>\n<main>\n")

    w('<section id="summary"><h2>Summary</h2><div class="cards">')
    w(f'<div class="card"><div class="n">{summary.total}</div>'
      '<div class="l">violations</div></div>')
    for severity in SEVERITIES:
        w(f'<div class="card {severity}"><div class="n">{summary.by_severity[severity]}</div>'
          f'<div class="l">{severity}</div></div>')
    w(f'<div class="card"><div class="n">{len(summary.by_app)}</div>'
      '<div class="l">apps</div></div></div>\n')

    rules = _ordered_rules(summary)
    w('<div class="grid"><div><h2>By rule</h2><table id="by-rule"><thead><tr><th>Rule</th>'
      '<th>Severity</th><th class="num">Count</th></tr></thead><tbody>')
    for rule in rules:
        counts = summary.by_rule[rule]
        badges = " ".join(_sev_badge(s) for s in SEVERITIES if counts[s])
        w(f'<tr><td><a href="#rule-{_e(rule)}">{_e(rule)}</a> <a href="#violations" '
          f'data-filter-rule="{_e(rule)}" class="muted">(show)</a></td><td>{badges}</td>'
          f'<td class="num">{sum(counts.values())}</td></tr>')
    if not rules:
        w('<tr><td colspan="3" class="muted">No violations.</td></tr>')
    w('</tbody></table></div>\n<div><h2>By app</h2><table id="by-app"><thead><tr><th>App</th>')
    w("".join(f'<th class="num">{s}</th>' for s in SEVERITIES))
    w('<th class="num">Total</th></tr></thead><tbody>')
    for app in sorted(summary.by_app):
        counts = summary.by_app[app]
        cells = "".join(f'<td class="num">{counts[s]}</td>' for s in SEVERITIES)
        w(f"<tr><td>{_e(app)}</td>{cells}<td class=\"num\">{sum(counts.values())}</td></tr>")
    if not summary.by_app:
        w(f'<tr><td colspan="{len(SEVERITIES) + 2}" class="muted">No violations.</td></tr>')
    w("</tbody></table></div></div></section>\n")

    if context.notes:
        w('<section id="notes"><h2>Notes on this input</h2><ul class="notes">')
        w("".join(f"<li>{_e(note)}</li>" for note in context.notes))
        w("</ul></section>\n")

    w('<section><h2>Violations</h2><div class="filters">'
      '<input id="q" type="search" placeholder="Filter: any text (URL, detail, appid, ...)" '
      'aria-label="Filter text">')
    w('<select id="f-sev" aria-label="Severity"><option value="">every severity</option>')
    w("".join(f'<option value="{s}">{s}</option>' for s in SEVERITIES if summary.by_severity[s]))
    w('</select><select id="f-rule" aria-label="Rule"><option value="">every rule</option>')
    w("".join(f'<option value="{_e(r)}">{_e(r)}</option>' for r in sorted(summary.by_rule)))
    w('</select><select id="f-app" aria-label="App"><option value="">every app</option>')
    w("".join(f'<option value="{_e(a)}">{_e(a)}</option>' for a in sorted(summary.by_app)))
    w(f'</select><span class="muted"><span id="shown">{summary.total}</span> of '
      f"{summary.total} shown</span></div>\n")
    # Fixed widths for the short columns leave the rest to URL and detail, which wrap.
    w('<div class="wrap"><table id="violations"><colgroup><col style="width:8.5em">'
      '<col style="width:12em"><col style="width:8em"><col style="width:17%">'
      '<col style="width:13.5em"><col style="width:6em"><col style="width:6em"><col>'
      '<col style="width:10em"></colgroup><thead><tr><th>Time</th><th>App</th>'
      "<th>API</th><th>URL</th>"
      "<th>Rule</th><th>Severity</th><th>Action</th><th>Detail</th><th>errMsg</th></tr>"
      "</thead><tbody>\n")
    for event in source():
        severity, app, rule = severity_of(event), app_of(event), str(event["rule"])
        method = f"{_e(event.get('method'))} " if event.get("method") else ""
        w(f'<tr data-sev="{_e(severity)}" data-rule="{_e(rule)}" data-app="{_e(app)}">'
          f'<td class="time" title="{_e(event.get("timestamp"))}">'
          f"{_e(_time(event.get('timestamp')))}</td>"
          f'<td class="app">{_e(app)}</td><td>{_e(event.get("api"))}</td>'
          f'<td class="url">{method}{_e(event.get("url"))}</td>'
          f'<td><a href="#rule-{_e(rule)}">{_e(rule)}</a></td><td>{_sev_badge(severity)}</td>'
          f"<td>{_e(event.get('action'))}</td><td>{_e(event.get('detail'))}</td>"
          f"<td>{_e(event.get('errMsg'))}</td></tr>\n")
    w("</tbody></table></div>")
    if not summary.total:
        w('<p class="muted">No violations: every call kept to the rules that were judged.</p>')
    w("</section>\n")

    w('<section id="rules"><h2>The rules broken here, and how to fix them</h2>')
    for rule in rules:
        text = explanation(rule)
        definition = RULES.get(rule)
        errmsg = definition.err_msg.format(api="{api}") if definition and \
            definition.err_msg else "(the call is not failed)"
        w(f'<div class="rule" id="rule-{_e(rule)}"><h3>{_e(rule)} '
          + " ".join(_sev_badge(s) for s in SEVERITIES if summary.by_rule[rule][s])
          + f'</h3><dl><dt>WeChat rule</dt><dd>{_e(text.wechat)}</dd><dt>Fix</dt>'
          f"<dd>{_e(text.fix)}</dd><dt>Client error</dt><dd>{_e(errmsg)}</dd></dl></div>\n")
    if not rules:
        w('<p class="muted">No rule was broken.</p>')
    if context.not_judged:
        w("<h2>Rules not judged from this input</h2><table id=\"not-judged\"><thead><tr>"
          "<th>Rule</th><th>Why</th></tr></thead><tbody>")
        for rule, why in sorted(context.not_judged.items()):
            w(f"<tr><td>{_e(rule)}</td><td>{_e(why)}</td></tr>")
        w("</tbody></table>")
    w(f"</section>\n</main>\n<script>{_JS}</script>\n</body></html>\n")


# --- JUnit ------------------------------------------------------------------------------------

def _x(value: Any) -> str:
    """Text for XML content or a double-quoted attribute."""
    text = _XML_INVALID.sub("\ufffd", "" if value is None else str(value))
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("\n", "&#10;"))


def _x_body(value: Any) -> str:
    """Text for XML element content, newlines kept."""
    text = _XML_INVALID.sub("\ufffd", "" if value is None else str(value))
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _describe(event: dict[str, Any]) -> str:
    lines = [f"{event.get('method') or ''} {event.get('url') or ''}".strip()]
    for key in ("timestamp", "api", "action", "detail", "errMsg", "errno", "platform",
                "flow_id", "source"):
        if event.get(key) is not None:
            lines.append(f"{key}: {event[key]}")
    return "\n".join(lines)


def write_junit(out: IO[str], source: Source, summary: Summary, context: ReportContext) -> None:
    """testsuites > testsuite per app > testcase per rule; a <failure> per error or warning.

    Info-level violations never fail a build: their testcase passes and lists them in
    <system-out>. A rule the input could not judge is a skipped testcase. Each group's
    XML is spooled to its own temporary file so that a large log renders in flat memory.
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
                spool.write(f'      <failure type="{_x(event["rule"])}" message="{_x(message)}">'
                            f"{_x_body(body)}</failure>\n")
            else:
                spool.write(_x_body(_describe(event)) + "\n\n")

        failing = {(a, r) for (a, r, kind) in spools if kind == "failure"}
        failures_of: Counter[str] = Counter()
        for app, _rule in failing:
            failures_of[app] += 1
        skipped = {r for r in context.not_judged if r not in summary.by_rule}
        total = len(apps) * len(rules)
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
        out.write(f'<testsuites name="{_x(context.title)}" tests="{total}" '
                  f'failures="{len(failing)}" errors="0" skipped="{len(skipped) * len(apps)}" '
                  'time="0">\n')
        for app in apps:
            out.write(f'  <testsuite name="wxgate.{_x(app)}" tests="{len(rules)}" '
                      f'failures="{failures_of[app]}" errors="0" '
                      f'skipped="{len(skipped)}" time="0" '
                      f'timestamp="{_x(datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"))}">\n')
            for rule in rules:
                out.write(f'    <testcase classname="wxgate.{_x(app)}" name="{_x(rule)}" '
                          'time="0"')
                failure = spools.get((app, rule, "failure"))
                info = spools.get((app, rule, "out"))
                if failure is None and info is None and rule not in skipped:
                    out.write("/>\n")
                    continue
                out.write(">\n")
                if failure is not None:
                    failure.seek(0)
                    shutil.copyfileobj(failure, out)
                elif rule in skipped:
                    out.write(f'      <skipped message="{_x(context.not_judged[rule])}"/>\n')
                if info is not None:
                    info.seek(0)
                    out.write("      <system-out>")
                    shutil.copyfileobj(info, out)
                    out.write("</system-out>\n")
                out.write("    </testcase>\n")
            out.write("  </testsuite>\n")
        out.write("</testsuites>\n")
    finally:
        for spool in spools.values():
            spool.close()


# --- writing files ----------------------------------------------------------------------------

class OutputError(Exception):
    """An output file can't be written; the message is one sentence."""


def write_outputs(source: Source, summary: Summary, context: ReportContext,
                  html_path: str | None, junit_path: str | None) -> None:
    for path, writer in ((html_path, write_html), (junit_path, write_junit)):
        if not path:
            continue
        try:
            with open(path, "w", encoding="utf-8", newline="\n") as out:
                writer(out, source, summary, context)
        except OSError as exc:
            raise OutputError(f"{path} cannot be written ({exc.strerror or exc}).") from None


def summary_lines(summary: Summary) -> list[str]:
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

def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "report", help="render a violation log (JSONL) as HTML and JUnit XML",
        description="Render a wxgate violation log as one self-contained HTML page and/or "
                    "JUnit XML; without --html or --junit, print a summary.")
    parser.add_argument("log", metavar="LOG.jsonl", help="the violation log (log.path)")
    parser.add_argument("--html", metavar="OUT", help="write the HTML report here")
    parser.add_argument("--junit", metavar="OUT", help="write JUnit XML here")
    parser.set_defaults(func=run_report)
    return parser


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
