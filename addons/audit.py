"""`wxgate audit FILE...`: the live addons, run offline over captured flows.

One code path. The audit builds a Runtime with the loaded config, takes the addon list
from `make_addons` (the list the proxy runs), registers it on a minimal mitmproxy
`Master` and feeds every captured HTTP flow through that master's `AddonManager`, hook
by hook, exactly as `mitmdump -r` and the live proxy dispatch hooks. Nothing here knows
a rule: an addon added to `make_addons` is audited without a change to this file.
Verdicts come back through the same structlog stream the proxy writes (`events.SINK`),
read back line by line.

Capture time, not file order. Flows are fed in the order their requests started, and a
flow's later hooks (responseheaders, response, websocket_*, error) fire only when the
capture's clock passes the flow's end. The concurrency and socket addons therefore see
the calls that overlapped in the capture as in flight and judge them with their own
slots; nothing is re-implemented. While its request hooks run, a flow's response,
error and WebSocket are set aside, as they do not exist yet on the wire (the addons
rightly skip a flow that already has a response).

Three things a capture holds that the live addons learn from the network are rebuilt:
the upstream TLS connection (`tls_established_server` fires once per captured server
connection that kept its certificate chain, after the request hooks of its first flow,
as under `connection_strategy=lazy`); the timeout (judged here from the request start
and the response end against the app's networkTimeout, unless an addon already logged
it for the flow); and a flow the capture never saw end (its `error` hook fires when
the capture ends, as a disconnect would fire it live).

Memory stays flat in the number of flows. A flow file is indexed first (start time and
byte offset, 16 bytes a flow, and the sort order when the file is not already in start
order, as `mitmdump -w` files are not) and then read again one flow at a time in start order;
only the flows in flight at the current capture time are held. A HAR is one JSON
document, parsed whole as mitmproxy's own reader does, and its entries are converted
to flows one at a time. Violations go to a JSONL file and the reports are rendered
from it.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import logging
import math
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from mitmproxy import eventsequence, hooks, http, options, tls
from mitmproxy import flow as mflow
from mitmproxy import log as mitmproxy_log
from mitmproxy.addonmanager import traverse
from mitmproxy.master import Master
from mitmproxy.proxy import context as proxy_context
from mitmproxy.proxy.layers import tls as tls_layer

from . import events
from .capture import InputError, end_of, open_capture, plural, start_of
from .configfile import config_path
from .pipeline import make_addons
from .policy.config import Config, ConfigError, load_config
from .policy.rules import RULES
from .progress import Progress
from .report import (
    SEVERITIES,
    LogSummary,
    OutputError,
    ReportContext,
    iter_log,
    summarize,
    summary_lines,
    write_outputs,
)
from .state import META, Runtime
from .verdict import info_of

TLS_RULES = tuple(r for r in RULES if r.startswith("tls.") and r != "tls.no_legacy")
# Server connections already announced; bounded so that memory stays flat.
_SEEN_SERVERS_MAX = 10_000


# --- collecting what the addons logged ------------------------------------------------------

def _iso(stamp: float) -> str:
    moment = datetime.fromtimestamp(stamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Collector:
    """Reads back each line the addons logged and writes it to the audit's JSONL.

    A line about a captured flow gets the flow's start time as `timestamp` (the wall
    clock of the audit means nothing to the reader) and the input file as `source`.
    """

    def __init__(self, sink_path: Path, out: IO[str]) -> None:
        self._reader = sink_path.open("r", encoding="utf-8")
        self._out = out
        self.times: dict[str, float] = {}
        self.source = ""
        self.internal_errors: list[str] = []

    def drain(self) -> None:
        while line := self._reader.readline():
            event = json.loads(line)
            stamp = self.times.get(str(event.get("flow_id")))
            if stamp is not None:
                event["timestamp"] = _iso(stamp)
            event["source"] = self.source
            if event.get("event") == "wxgate_error":
                self.internal_errors.append(f"{event.get('hook')}: {event.get('error')}")
            self._out.write(json.dumps(event, ensure_ascii=False, default=str) + "\n")

    def close(self) -> None:
        self._reader.close()


@contextmanager
def _events_into(path: Path, max_field_bytes: int) -> Iterator[None]:
    """Point the process-wide violation log at `path`, console off; restore afterwards."""
    previous, mode = events.SINK.path, events.CONSOLE.mode
    events.configure("off", max_field_bytes)
    events.SINK.open(path)
    try:
        yield
    finally:
        events.SINK.close()
        events.CONSOLE.mode = mode
        if previous is not None:
            events.SINK.open(previous)


class _AddonErrors(logging.Handler):
    """Counts the hook exceptions mitmproxy's addon manager logs and swallows."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _addon_errors() -> Iterator[_AddonErrors]:
    logger = logging.getLogger("mitmproxy.addonmanager")
    handler, propagate = _AddonErrors(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False  # a traceback on the terminal is not a verdict
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


# --- running the addons ---------------------------------------------------------------------

@dataclass
class Stats:
    flows: int = 0
    in_scope: int = 0
    https: int = 0
    tls_chains: int = 0
    har_flows: int = 0
    non_http: int = 0
    unfinished: int = 0
    timeout_unjudged: int = 0
    passthrough: int = 0


@dataclass(order=True)
class _Held:
    end: float
    seq: int
    flow: http.HTTPFlow = field(compare=False)
    response: http.Response | None = field(compare=False)
    error: mflow.Error | None = field(compare=False)
    websocket: Any = field(compare=False)


class Auditor:
    """Feeds captured flows through the addons on a minimal master, in capture time."""

    def __init__(self, runtime: Runtime, addons: list[object], collector: Collector,
                 opts: dict[str, Any] | None = None) -> None:
        self.runtime = runtime
        self.addons = addons
        self.collector = collector
        self.stats = Stats()
        self._opts = opts or {}
        self._seen_servers: OrderedDict[str, None] = OrderedDict()
        self._seq = 0
        self.master: Master | None = None

    def start(self) -> None:
        """Register the addons (their `load` hooks run) and configure them as mitmdump does."""
        self.master = Master(options.Options(), event_loop=asyncio.get_running_loop())
        self.master.addons.add(*self.addons)
        if self._opts:
            self.master.options.update(**self._opts)
        self.master.addons.trigger(hooks.ConfigureHook(set(self.master.options.keys())))
        # Loading the addons switched the console back on; the audit prints its own summary.
        events.CONSOLE.mode = "off"

    def close(self) -> None:
        """Take down the root-logger handler the master installed for the deprecated
        `add_log` event. `Master.done()`, its public way out, would also fire every addon's
        `done` hook (the final summary printed, `shutdown` logged into the audit's
        sink), so the handler is removed through `logging` instead."""
        if self.master is None:
            return
        root = logging.getLogger()
        for handler in list(root.handlers):
            if isinstance(handler, mitmproxy_log.LegacyLogEvents) and \
                    handler.master is self.master:
                root.removeHandler(handler)

    @property
    def judges_tls(self) -> bool:
        return any(hasattr(a, "tls_established_server") for a in traverse(self.addons))

    async def _fire(self, hook: hooks.Hook) -> None:
        """Dispatch one hook to every addon, in order, as the proxy's addon manager does.

        `trigger_event` rather than `handle_lifecycle`: the latter also fires `update`
        after each flow hook, which only refreshes a UI and would double the work.
        """
        assert self.master is not None
        await self.master.addons.trigger_event(hook)

    async def audit(self, flows: Iterator[http.HTTPFlow], total: int, label: str,
                    progress: Progress | None = None) -> None:
        held: list[_Held] = []
        done = 0
        for captured in flows:
            done += 1
            if self._tunneled(captured):
                self.stats.passthrough += 1
                continue
            start = start_of(captured)
            while held and held[0].end <= start:
                await self._finish(heapq.heappop(held))
            heapq.heappush(held, await self._begin(captured, start))
            if progress is not None:
                progress.update(f"auditing {label}", done, total)
        while held:
            await self._finish(heapq.heappop(held), capture_ended=True)

    def _tunneled(self, captured: http.HTTPFlow) -> bool:
        """A flow the proxy would have tunneled untouched (`passthrough`, matched on SNI).

        The Passthrough addon decides in `tls_clienthello`, which a capture can't replay;
        the same patterns are applied here to the name the client asked for.
        """
        if captured.request.scheme not in ("https", "wss"):
            return False
        sni = captured.server_conn.sni or captured.request.pretty_host
        return bool(sni) and any(p.search(sni) for p in self.runtime.passthrough)

    async def _begin(self, captured: http.HTTPFlow, start: float) -> _Held:
        end = end_of(captured)
        self._seq += 1
        item = _Held(end, self._seq, captured, captured.response, captured.error,
                     captured.websocket)
        # On the wire none of these exist yet while the request hooks run.
        captured.response, captured.error, captured.websocket = None, None, None
        captured.metadata.pop(META, None)  # judged afresh, whatever a live run recorded
        self.collector.times[captured.id] = start
        self.stats.flows += 1
        # With nothing but the request left, mitmproxy's own event sequence for the flow is
        # exactly requestheaders, request.
        for hook in eventsequence.iterate(captured):
            await self._fire(hook)
        await self._upstream_tls(captured)
        self.collector.drain()
        return item

    async def _upstream_tls(self, captured: http.HTTPFlow) -> None:
        server = captured.server_conn
        if server.id in self._seen_servers:
            return
        self._seen_servers[server.id] = None
        if len(self._seen_servers) > _SEEN_SERVERS_MAX:
            self._seen_servers.popitem(last=False)
        if not (server.certificate_list or server.tls_established):
            return
        assert self.master is not None
        context = proxy_context.Context(captured.client_conn, self.master.options)
        context.server = server
        await self._fire(tls_layer.TlsEstablishedServerHook(tls.TlsData(server, context)))

    async def _finish(self, item: _Held, capture_ended: bool = False) -> None:
        captured = item.flow
        captured.response, captured.error, captured.websocket = (
            item.response, item.error, item.websocket)
        unfinished = math.isinf(item.end) and captured.websocket is None
        if unfinished:
            self.stats.unfinished += 1
            if capture_ended:
                # Live, a call that never ends gets `error` when its connection goes;
                # without it the slots it holds would never be given back.
                captured.error = mflow.Error("the capture ends before this call completed")
        for hook in eventsequence.iterate(captured):
            if hook.name not in ("requestheaders", "request"):
                await self._fire(hook)
        if not unfinished:
            self._judge_timeout(captured)
        self._count(captured)
        self.collector.drain()
        self.collector.times.pop(captured.id, None)

    def _judge_timeout(self, captured: http.HTTPFlow) -> None:
        """NetworkTimeout judges a capture's timeouts from its timestamps; count the calls
        it could not judge because the capture recorded no end."""
        info = info_of(captured)
        ended = captured.response is not None or (
            captured.error is not None and captured.error.timestamp)
        if info.call.in_scope and (not ended or captured.request.timestamp_start is None):
            self.stats.timeout_unjudged += 1

    def _count(self, captured: http.HTTPFlow) -> None:
        info = info_of(captured)
        if info.call.in_scope:
            self.stats.in_scope += 1
        if captured.request.scheme in ("https", "wss"):
            self.stats.https += 1
            if captured.server_conn.certificate_list:
                self.stats.tls_chains += 1


def audit_config(config: Config) -> Config:
    """The config as the audit applies it: nothing is connected, nothing is injected."""
    return replace(config, resolve={}, faults=())


# --- what could not be judged ---------------------------------------------------------------

def not_judged(stats: Stats, judges_tls: bool) -> dict[str, str]:
    out = {
        "background.interrupted": "a capture does not record when the app went to background; "
                                  "drive it live with the control API",
        "background.blocked": "a capture does not record when the app went to background; "
                              "drive it live with the control API",
        "tls.no_legacy": "needs a live probe of the TLS versions the server accepts: run "
                         "`wxgate check-cert HOST`",
    }
    if not judges_tls:
        out.update(dict.fromkeys(TLS_RULES, "no addon in this build judges upstream TLS"))
    elif stats.tls_chains == 0:
        out.update(dict.fromkeys(TLS_RULES, "no flow in this input kept its server's "
                                            "certificate chain (HAR never does)"))
    if stats.in_scope and stats.timeout_unjudged == stats.in_scope:
        out["timeout.exceeded"] = "no call in this input has a recorded end"
    return out


def notes_for(stats: Stats, judges_tls: bool, damage: list[str], apps: int) -> list[str]:
    notes = list(damage)
    notes.append(
        f"{plural(stats.flows, 'HTTP flow')} audited, {stats.in_scope} of them from mini "
        "programs; each violation's time is the start of its call in the capture.")
    notes.append("concurrency.exceeded and socket.exceeded are judged from overlapping "
                 "timestamps: a call is in flight from its request's start to its response's "
                 "end (or its error, or the socket's close).")
    notes.append("timeout.exceeded is judged from the request's start and the response's end "
                 "against the app's networkTimeout."
                 + (f" {plural(stats.timeout_unjudged, 'call')} without a recorded end could "
                    "not be judged." if stats.timeout_unjudged else ""))
    if judges_tls and 0 < stats.tls_chains < stats.https:
        notes.append(f"TLS rules are judged for {stats.tls_chains} of {stats.https} https "
                     "flows; the others kept no certificate chain (HAR entries never do).")
    if stats.har_flows:
        notes.append(f"{plural(stats.har_flows, 'flow')} came from HAR, which holds no TLS "
                     "data and no WebSocket lifetime beyond the entry's own time.")
    if stats.non_http:
        notes.append(f"{plural(stats.non_http, 'non-HTTP flow')} (TCP, UDP, DNS) were "
                     "skipped: no mini-program API makes them.")
    if stats.passthrough:
        notes.append(f"{plural(stats.passthrough, 'flow')} to passthrough hosts were not "
                     "judged: the proxy tunnels them untouched.")
    if not apps:
        notes.append("The config lists no app, so no call was judged as a mini program's.")
    if stats.unfinished:
        notes.append(f"{plural(stats.unfinished, 'call')} never ended in the capture; they "
                     "count as in flight until its end.")
    notes.append("Rules that need the live client (background.*) or a live server "
                 "(tls.no_legacy) are not judged offline.")
    return notes


# --- the command ----------------------------------------------------------------------------

@dataclass
class AuditResult:
    summary: LogSummary
    stats: Stats
    bad_inputs: list[str]
    internal_errors: list[str]
    not_judged: dict[str, str]
    notes: list[str]

    def exit_code(self, fail_on: str) -> int:
        if self.bad_inputs:
            return 2
        if self.internal_errors or self.summary.at_or_above(fail_on):
            return 1
        return 0


async def _audit_files(paths: list[Path], runtime: Runtime, collector: Collector,
                       opts: dict[str, Any], progress: Progress
                       ) -> tuple[Auditor, list[str], list[str]]:
    auditor = Auditor(runtime, make_addons(runtime), collector, opts)
    auditor.start()
    bad: list[str] = []
    damage: list[str] = []
    try:
        for path in paths:
            try:
                capture = open_capture(path, progress)
            except InputError as exc:
                bad.append(str(exc))
                continue
            auditor.stats.non_http += capture.non_http
            if capture.kind == "har":
                auditor.stats.har_flows += capture.count
            collector.source = str(path)
            await auditor.audit(capture.flows(), capture.count, path.name, progress)
            progress.clear()
            if capture.damage:
                bad.append(capture.damage)
                damage.append(capture.damage)
    finally:
        auditor.close()
    return auditor, bad, damage


def audit(paths: list[Path], config: Config, jsonl: Path, *, cafile: str | None = None,
          progress: Progress | None = None) -> AuditResult:
    """Audit the captures, writing every logged line to `jsonl`; the verdict and the counts."""
    progress = progress or Progress(enabled=False)
    runtime = Runtime()
    runtime.install(audit_config(config))
    opts = {"ssl_verify_upstream_trusted_ca": cafile} if cafile else {}
    with tempfile.TemporaryDirectory(prefix="wxgate-audit-") as tmp:
        sink = Path(tmp) / "events.jsonl"
        with jsonl.open("w", encoding="utf-8") as out, \
                _events_into(sink, config.log.max_field_bytes), _addon_errors() as errors:
            collector = Collector(sink, out)
            try:
                auditor, bad, damage = asyncio.run(
                    _audit_files(paths, runtime, collector, opts, progress))
            finally:
                collector.close()
    internal = collector.internal_errors + [f"addon error: {m}" for m in errors.messages]
    judges_tls = auditor.judges_tls
    return AuditResult(
        summary=summarize(lambda: iter_log(jsonl)),
        stats=auditor.stats,
        bad_inputs=bad,
        internal_errors=internal,
        not_judged=not_judged(auditor.stats, judges_tls),
        notes=notes_for(auditor.stats, judges_tls, damage, len(config.apps)),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`wxgate audit`'s arguments, on the parser `cli` made for it."""
    parser.description = ("Run the live proxy's addons over captured flows and report what "
                          "the WeChat client would have failed. Exit 0: no violation at or "
                          "above --fail-on; 1: some; 2: bad input.")
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="mitmproxy flow file (-w / save) or HAR export")
    parser.add_argument("-c", "--config", help="config file (default: $WXGATE_CONFIG, "
                        "./wxgate.yaml, then the bundled config/default.yaml)")
    parser.add_argument("--html", metavar="OUT", help="write the HTML report here")
    parser.add_argument("--junit", metavar="OUT", help="write JUnit XML here")
    parser.add_argument("--jsonl", metavar="OUT", help="write the violation lines here")
    parser.add_argument("--fail-on", choices=SEVERITIES, default="error",
                        help="exit 1 on a violation of this severity or worse (default: error)")
    parser.add_argument("--cafile", metavar="FILE",
                        help="extra trusted roots for the TLS rules (as "
                             "ssl_verify_upstream_trusted_ca)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar, even on a terminal")
    parser.set_defaults(func=run_audit)


def _say(message: str) -> None:
    print(f"wxgate audit: {events.terminal_safe(message)}", file=sys.stderr)


def run_audit(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            _say(str(problem))
        return 2
    if not config.apps:
        _say(f"{path} lists no app, so no call is judged as a mini program's.")
    if args.cafile and not Path(args.cafile).is_file():
        _say(f"{args.cafile} (--cafile) does not exist.")
        return 2
    progress = Progress(enabled=False if args.no_progress else None)
    with tempfile.TemporaryDirectory(prefix="wxgate-audit-") as tmp:
        jsonl = Path(args.jsonl) if args.jsonl else Path(tmp) / "violations.jsonl"
        try:
            result = audit([Path(f) for f in args.files], config, jsonl, cafile=args.cafile,
                           progress=progress)
        except OSError as exc:
            _say(f"{exc.filename or jsonl} cannot be written ({exc.strerror or exc}).")
            return 2
        except Exception as exc:  # noqa: BLE001 - a sentence, never a traceback (SPEC §2)
            _say(f"the audit stopped on an internal error ({type(exc).__name__}: {exc}); "
                 "nothing was judged, please report this.")
            return 2
        context = ReportContext(
            title="wxgate audit", inputs=list(args.files), notes=result.notes,
            not_judged=result.not_judged, apps=[a.appid for a in config.apps],
            rules=sorted(r for r in RULES))
        try:
            write_outputs(lambda: iter_log(jsonl), result.summary, context, args.html,
                          args.junit)
        except OutputError as exc:
            _say(str(exc))
            return 2
    for sentence in result.bad_inputs:
        _say(sentence)
    if result.internal_errors:
        _say(f"wxgate failed {plural(len(result.internal_errors), 'time')} while judging "
             f"(first: {result.internal_errors[0]}), so the audit fails closed.")
    _print_summary(result, args)
    return result.exit_code(args.fail_on)


def _print_summary(result: AuditResult, args: argparse.Namespace) -> None:
    stats = result.stats
    print(f"wxgate audit: {plural(len(args.files), 'file')}, "
          f"{plural(stats.flows, 'HTTP flow')} ({stats.in_scope} from mini programs)")
    for line in summary_lines(result.summary):
        print(line)
    if result.not_judged:
        print("not judged from this input:")
        reasons: dict[str, list[str]] = {}
        for rule, why in sorted(result.not_judged.items()):
            reasons.setdefault(why, []).append(rule)
        for why, rules in reasons.items():
            print(f"  {', '.join(rules)}: {why}")
    for label, written in (("JSONL", args.jsonl), ("HTML", args.html), ("JUnit", args.junit)):
        if written:
            print(f"{label}: {written}")
    failing = result.summary.at_or_above(args.fail_on)
    code = result.exit_code(args.fail_on)
    verdict = {0: "PASS", 1: "FAIL", 2: "BAD INPUT"}[code]
    print(f"{verdict}: {failing} violation{'s' if failing != 1 else ''} at or above "
          f"{args.fail_on}")
