"""The audit's engine: the live addons, replayed over one indexed capture in capture time,
in one process or in parts side by side.

One code path. A replay builds a Runtime with the loaded config, takes the addon list
from `make_addons` (the list the proxy runs), registers it on a minimal mitmproxy
master (their `load` and `configure` hooks, the options) and feeds every captured HTTP
flow to their hooks in list order, hook by hook, as the live proxy dispatches them, but
called directly rather than through the master's addon manager. Nothing here knows a
rule: an addon added to `make_addons` is audited without a change to this file.
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

Parts. A large flow file is cut into parts (`Capture.parts`) that processes replay side
by side, one core each. Offline no call is held back (a loaded flow is not live), so the
only state one call leaves for the next is which calls are in flight: the in-flight and
socket slots. A part therefore first replays, without a word, the calls of the part
before that are still in flight when its own first call starts; and the split is
checked: the slots the part before holds at that moment must be the slots the part
rebuilt, else the capture is replayed again in one process. The parts' lines are
written in part order, so a line of a call still running across the cut comes before
the next part's lines rather than among them.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import json
import logging
import math
import multiprocessing
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import IO, Any

from mitmproxy import addonmanager, command, ctx, hooks, http, options, tls
from mitmproxy import flow as mflow
from mitmproxy.addonmanager import traverse
from mitmproxy.proxy import context as proxy_context

from . import events
from .capture import Capture, Part, end_of, start_of
from .pipeline import make_addons
from .policy.config import Config
from .progress import Progress
from .state import META, REFERER_SENT, RESOLVED_FROM, Runtime
from .verdict import info_of

# Server connections already announced; bounded so that memory stays flat.
_SEEN_SERVERS_MAX = 10_000
# A part smaller than this costs more to start than it saves.
MIN_PART_FLOWS = 5_000


def default_jobs() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# --- collecting what the addons logged ------------------------------------------------------

def _iso(stamp: float) -> str:
    moment = datetime.fromtimestamp(stamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Collector:
    """Reads back each line the addons logged and writes it to the audit's JSONL.

    A line about a captured flow gets the flow's start time as `timestamp` (the wall
    clock of the audit means nothing to the reader) and the input file as `source`. A
    line about a flow replayed only to warm a part up (`silent`) is dropped: the part
    before writes it.
    """

    def __init__(self, sink_path: Path, out: IO[str]) -> None:
        self._reader = sink_path.open("r", encoding="utf-8")
        self._out = out
        self.times: dict[str, float] = {}
        self.silent: set[str] = set()
        self.source = ""
        self.internal_errors: list[str] = []

    def drain(self) -> None:
        while line := self._reader.readline():
            event = json.loads(line)
            flow_id = str(event.get("flow_id"))
            if flow_id in self.silent:
                continue
            stamp = self.times.get(flow_id)
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
    """Counts the hook exceptions mitmproxy's addon manager logs and swallows (`load`,
    `configure`: the hooks the master still dispatches)."""

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

    def add(self, other: Stats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(order=True)
class _Held:
    end: float
    seq: int
    flow: http.HTTPFlow = field(compare=False)
    response: http.Response | None = field(compare=False)
    error: mflow.Error | None = field(compare=False)
    websocket: Any = field(compare=False)
    silent: bool = field(compare=False)


# Who holds an in-flight and a socket slot, per (device, app, pool) key.
SlotState = tuple[dict[Any, frozenset[Any]], dict[Any, frozenset[Any]]]


class OfflineMaster:
    """What the addons' `load` and `configure` hooks need of a master: options, commands,
    the addon manager, the event loop. mitmproxy's `Master` would import its default
    addons (Flask, QUIC, LDAP): a third of the audit's memory, none of it used offline."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.event_loop = loop
        self.options = options.Options()
        self.commands = command.CommandManager(self)
        self.addons = addonmanager.AddonManager(self)
        ctx.master = self  # type: ignore[assignment]
        ctx.options = self.options


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
        self._hooks: dict[str, list[Callable[..., Any]]] = {}
        self.hook_errors: list[str] = []
        # The slots held where this part begins (after its warm-up) and where the next
        # part begins, for the check of a split.
        self.entry_slots: SlotState | None = None
        self.exit_slots: SlotState | None = None
        self.master: OfflineMaster | None = None
        self._capture_end = math.inf

    def start(self) -> None:
        """Register the addons (their `load` hooks run) and configure them as mitmdump does."""
        self.master = OfflineMaster(asyncio.get_running_loop())
        self.master.addons.add(*self.addons)
        if self._opts:
            self.master.options.update(**self._opts)
        self.master.addons.trigger(hooks.ConfigureHook(set(self.master.options.keys())))
        # Loading the addons switched the console back on; the audit prints its own summary.
        events.CONSOLE.mode = "off"

    def _handlers(self, name: str) -> list[Callable[..., Any]]:
        handlers = self._hooks.get(name)
        if handlers is None:
            handlers = self._hooks[name] = [
                method for a in traverse(self.addons)
                if callable(method := getattr(a, name, None))]
        return handlers

    async def _fire(self, name: str, *args: Any) -> None:
        """Call one hook on the addons that have it, in list order, as the proxy does.

        Directly, not through the master's `trigger_event`: that visits every addon (with
        its own context manager and coroutine) for each of a flow's six or so hooks, which
        was half of an audit's time. As mitmproxy does, a hook that raises is counted (the
        audit fails closed on it) and the next addon still runs.
        """
        for handler in self._handlers(name):
            try:
                result = handler(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # noqa: BLE001 - mitmproxy's addon manager does the same
                self.hook_errors.append(f"Addon error: {exc}")

    def slots(self) -> SlotState:
        return self.runtime.inflight.holders(), self.runtime.sockets.holders()

    async def audit(self, flows: Iterator[tuple[int, http.HTTPFlow]], part: Part, total: int,
                    ends: float, tick: Callable[[int], None] | None = None) -> None:
        """Replay `part`: the flows before `part.first` only warm the slots up. `ends` is
        the last moment of the whole capture, when a call it never saw end is failed."""
        self._capture_end = ends
        held: list[_Held] = []
        done = 0
        for position, captured in flows:
            start = start_of(captured)
            while held and held[0].end <= start:
                await self._finish(heapq.heappop(held))
            if position == part.first:
                self.entry_slots = self.slots()
            silent = position < part.first
            if not silent:
                done += 1
            if self._tunneled(captured):
                self.stats.passthrough += not silent
                continue
            heapq.heappush(held, await self._begin(captured, start, silent))
            if tick is not None and not silent and (done & 255 == 0 or done == total):
                tick(done)
        if part.until < math.inf:  # where the next part begins
            while held and held[0].end <= part.until:
                await self._finish(heapq.heappop(held))
            self.exit_slots = self.slots()
        while held:
            await self._finish(heapq.heappop(held), capture_ended=True)
        if tick is not None:
            tick(done)

    def _tunneled(self, captured: http.HTTPFlow) -> bool:
        """A flow the proxy would have tunneled untouched (`passthrough`, matched on SNI).

        The Passthrough addon decides in `tls_clienthello`, which a capture can't replay;
        the same patterns are applied here to the name the client asked for.
        """
        patterns = self.runtime.passthrough
        if not patterns or captured.request.scheme not in ("https", "wss"):
            return False
        sni = captured.server_conn.sni or captured.request.pretty_host
        return bool(sni) and any(p.search(sni) for p in patterns)

    async def _begin(self, captured: http.HTTPFlow, start: float, silent: bool) -> _Held:
        end = end_of(captured)
        self._seq += 1
        item = _Held(end, self._seq, captured, captured.response, captured.error,
                     captured.websocket, silent)
        # On the wire none of these exist yet while the request hooks run.
        captured.response, captured.error, captured.websocket = None, None, None
        captured.metadata.pop(META, None)  # judged afresh, whatever a live run recorded
        _as_sent(captured)
        self.collector.times[captured.id] = start
        if silent:
            self.collector.silent.add(captured.id)
        else:
            self.stats.flows += 1
        await self._fire("requestheaders", captured)
        await self._fire("request", captured)
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
        await self._fire("tls_established_server", tls.TlsData(server, context))

    async def _finish(self, item: _Held, capture_ended: bool = False) -> None:
        captured = item.flow
        captured.response, captured.error, captured.websocket = (
            item.response, item.error, item.websocket)
        unfinished = math.isinf(item.end) and captured.websocket is None
        if unfinished:
            self.stats.unfinished += not item.silent
            if capture_ended:
                # Live, a call that never ends gets `error` when its connection goes;
                # without it the slots it holds would never be given back.
                captured.error = mflow.Error("the capture ends before this call completed",
                                             self._capture_end)
        await self._after_request(captured)
        if not item.silent:
            if not unfinished:
                self._judge_timeout(captured)
            self._count(captured)
        self.collector.drain()
        self.collector.times.pop(captured.id, None)
        self.collector.silent.discard(captured.id)

    async def _after_request(self, captured: http.HTTPFlow) -> None:
        """The hooks of a flow after its request's, in the order mitmproxy's own
        `eventsequence` gives them (without importing the proxy's protocol layers)."""
        if captured.response is not None:
            await self._fire("responseheaders", captured)
            await self._fire("response", captured)
        if captured.websocket is not None:
            messages = captured.websocket.messages
            captured.websocket.messages = []
            await self._fire("websocket_start", captured)
            for message in messages:
                captured.websocket.messages.append(message)
                await self._fire("websocket_message", captured)
            await self._fire("websocket_end", captured)
        elif captured.error is not None:
            await self._fire("error", captured)

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


def _as_sent(captured: http.HTTPFlow) -> None:
    """A flow saved by the proxy holds the request as wxgate changed it: pointed at its
    `resolve` target, with the canonical Referer. The audit judges what the client sent
    (and connects nothing), so the request gets back the name and port the client asked
    for, its Host header untouched, and the Referer it sent."""
    metadata = captured.metadata
    request = captured.request
    asked = metadata.pop(RESOLVED_FROM, None)
    if (isinstance(asked, list | tuple) and len(asked) == 2 and isinstance(asked[0], str)
            and isinstance(asked[1], int)):
        host_header = request.host_header
        request.host, request.port = asked
        request.host_header = host_header
    if REFERER_SENT in metadata:
        referer = metadata.pop(REFERER_SENT)
        if isinstance(referer, str):
            request.headers["Referer"] = referer
        elif referer is None:
            request.headers.pop("Referer", None)


def audit_config(config: Config) -> Config:
    """The config as the audit applies it: nothing is connected, nothing is injected."""
    return replace(config, resolve={}, faults=())


def judges_tls() -> bool:
    """Whether an addon of this build judges upstream TLS (so a chain can be audited)."""
    return any(hasattr(a, "tls_established_server") for a in traverse(make_addons()))


# --- one capture, whole or in parts ---------------------------------------------------------

@dataclass
class Replayed:
    """What replaying a capture (or a part of it) found, besides the lines it wrote."""

    stats: Stats = field(default_factory=Stats)
    errors: list[str] = field(default_factory=list)  # internal errors: the audit fails
    damage: str | None = None
    entry_slots: SlotState | None = None
    exit_slots: SlotState | None = None
    parts: int = 1


def replay(capture: Capture, config: Config, out: IO[str], *, opts: dict[str, Any],
           progress: Progress, jobs: int) -> Replayed:
    """Replay one capture, writing the lines it logs to `out`: in parts side by side
    when it is large and `jobs` allows, else here."""
    parts = capture.parts(jobs, MIN_PART_FLOWS)
    if len(parts) > 1 and "fork" in multiprocessing.get_all_start_methods():
        indexed = capture.damage
        found = _replay_parts(capture, parts, config, out, opts, progress)
        if found is not None:
            return found
        capture.damage = indexed  # replayed again, whole, here
    label = f"auditing {capture.path.name}"
    return _replay_part(capture, capture.whole(), config, out, opts,
                        lambda done: progress.update(label, done, capture.count))


def _replay_part(capture: Capture, part: Part, config: Config, out: IO[str],
                 opts: dict[str, Any], tick: Callable[[int], None]) -> Replayed:
    runtime = Runtime()
    runtime.install(audit_config(config))
    with tempfile.TemporaryDirectory(prefix="wxgate-audit-") as tmp:
        sink = Path(tmp) / "events.jsonl"
        with _events_into(sink, config.log.max_field_bytes), _addon_errors() as errors:
            collector = Collector(sink, out)
            collector.source = str(capture.path)
            try:
                auditor = asyncio.run(_run(capture, part, runtime, collector, opts, tick))
            finally:
                collector.close()
    return Replayed(
        stats=auditor.stats,
        errors=collector.internal_errors + [
            f"addon error: {m}" for m in errors.messages + auditor.hook_errors],
        damage=capture.damage, entry_slots=auditor.entry_slots,
        exit_slots=auditor.exit_slots)


async def _run(capture: Capture, part: Part, runtime: Runtime, collector: Collector,
               opts: dict[str, Any], tick: Callable[[int], None]) -> Auditor:
    auditor = Auditor(runtime, make_addons(runtime), collector, opts)
    auditor.start()
    await auditor.audit(capture.flows(part), part, part.last - part.first,
                        capture.last_moment(), tick)
    return auditor


def _replay_parts(capture: Capture, parts: list[Part], config: Config, out: IO[str],
                  opts: dict[str, Any], progress: Progress) -> Replayed | None:
    """The first part here, each other one in a forked process of its own; None when a
    cut does not hold (the slots one part ends with at the cut are not the ones the next
    rebuilt)."""
    context = multiprocessing.get_context("fork")
    out.flush()  # a forked process must not inherit unwritten lines
    indexed = capture.damage  # what the index found: every part reports it
    done = context.Array("q", len(parts), lock=False)
    label = f"auditing {capture.path.name}"
    with tempfile.TemporaryDirectory(prefix="wxgate-audit-parts-") as tmp:
        written = [Path(tmp) / f"part-{n}.jsonl" for n in range(len(parts))]
        workers: dict[Connection, tuple[int, Any]] = {}
        try:
            for n in range(1, len(parts)):
                receive, send = context.Pipe(duplex=False)
                worker = context.Process(
                    target=_part_worker, name=f"wxgate-audit-{n + 1}", daemon=True,
                    args=(send, capture, parts[n], config, opts, written[n], done, n))
                worker.start()
                send.close()
                workers[receive] = (n, worker)

            def tick(count: int) -> None:
                done[0] = count
                progress.update(label, sum(done), capture.count)

            with written[0].open("w", encoding="utf-8") as first:
                results = {0: _replay_part(capture, parts[0], config, first, opts, tick)}
            results.update(_collect(workers, lambda: progress.update(
                label, sum(done), capture.count)))
        finally:
            for _, worker in workers.values():
                worker.terminate()
                worker.join()
        used: list[Replayed] = []
        for n in range(len(parts)):
            found = results[n]
            if n and found.entry_slots != results[n - 1].exit_slots:
                return None
            used.append(found)
            if found.damage != indexed:
                break  # as in one process: the flows after a damaged one are not audited
        merged = Replayed(parts=len(parts))
        for n, found in enumerate(used):
            with written[n].open("r", encoding="utf-8") as lines:
                for line in lines:
                    out.write(line)
            merged.stats.add(found.stats)
            merged.errors += found.errors
            merged.damage = capture.damage = found.damage
        return merged


def _collect(workers: dict[Connection, tuple[int, Any]], show: Callable[[], None]
             ) -> dict[int, Replayed]:
    """Each worker's result as it comes; RuntimeError with the first failure's reason."""
    results: dict[int, Replayed] = {}
    pending = dict(workers)
    while pending:
        for ready in wait(list(pending), timeout=0.2):
            assert isinstance(ready, Connection)
            n, _ = pending.pop(ready)
            try:
                kind, value = ready.recv()
            except EOFError:
                kind, value = "error", f"the process of part {n + 1} ended without a result"
            ready.close()
            if kind == "error":
                raise RuntimeError(value)
            assert isinstance(value, Replayed)
            results[n] = value
        show()
    return results


def _part_worker(send: Connection, capture: Capture, part: Part, config: Config,
                 opts: dict[str, Any], lines: Path, done: Any, n: int) -> None:
    def tick(count: int) -> None:
        done[n] = count

    try:
        with lines.open("w", encoding="utf-8") as out:
            found = _replay_part(capture, part, config, out, opts, tick)
        send.send(("ok", found))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, as one sentence
        send.send(("error", f"part {n + 1} of {capture.path.name}: "
                            f"{type(exc).__name__}: {exc}"))
    finally:
        send.close()
