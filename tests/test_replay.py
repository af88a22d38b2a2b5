"""The audit's engine: a capture replayed in parts, side by side, finds exactly what one
replay finds; the cut is checked, and a cut that does not hold is replayed whole."""

from __future__ import annotations

import io
import json
import math
import multiprocessing
from array import array
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import connection, http
from wxgate import replay as replay_module
from wxgate.capture import Capture, Part, open_capture
from wxgate.policy.config import load_config
from wxgate.progress import Progress
from wxgate.replay import Replayed, replay

from .audit_helpers import CONFIG, MP, T0, make_flow, tls_chain, write_config, write_flows

# Concurrency 3, so that a few overlapping calls cross the limit on either side of a cut.
SMALL_LIMITS = CONFIG.replace("log:\n", "limits:\n  concurrency: 3\nlog:\n")


def mixed_session() -> list[http.HTTPFlow]:
    """Forty calls over 40 s: bursts over the limit, a socket open across the whole
    capture, violations of several kinds, one upstream TLS connection reused throughout,
    a call that never ends and one that outlives the networkTimeout."""
    chain, _ = tls_chain()
    shared = connection.Server(address=("api.example.com", 443), sni="api.example.com",
                               tls_version="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256",
                               certificate_list=chain, timestamp_tls_setup=T0)
    flows = [make_flow("wss://ws.example.com/chat", start=T0, websocket_for=60.0, headers=MP)]
    for i in range(40):
        start = T0 + i
        kind = i % 8
        if kind == 0:  # a burst of five overlapping 2.5 s calls: two over the limit
            flows += [make_flow(f"https://api.example.com/burst/{i}/{n}", start=start + n * 0.01,
                                duration=2.5, headers=MP) for n in range(5)]
        elif kind == 3:
            flows.append(make_flow(f"https://evil.example.net/track/{i}", start=start,
                                   headers=MP))
        elif kind == 5:
            flows.append(make_flow(f"http://api.example.com/plain/{i}", start=start,
                                   headers=MP))
        elif kind == 6:
            flows.append(make_flow(f"https://api.example.com/slow/{i}", start=start,
                                   duration=6.0, headers=MP))
        else:
            call = make_flow(f"https://api.example.com/ok/{i}", start=start, headers=MP)
            call.server_conn = shared
            flows.append(call)
    hanging = make_flow("https://api.example.com/hanging", start=T0 + 12.5, headers=MP)
    hanging.response = None
    flows.append(hanging)
    return flows


def lines(text: str) -> Counter[str]:
    """Every line but its `timestamp` (only a line about no flow has the audit's clock)."""
    return Counter(json.dumps({k: v for k, v in json.loads(line).items() if k != "timestamp"},
                              sort_keys=True) for line in text.splitlines())


def run(tmp_path: Path, jobs: int) -> tuple[Replayed, str]:
    """Replay the session (written once, so both runs see the same flow ids)."""
    path = tmp_path / "session.mitm"
    if not path.exists():
        write_flows(path, mixed_session())
    capture = open_capture(path)
    config = load_config(write_config(tmp_path, SMALL_LIMITS))
    out = io.StringIO()
    found = replay(capture, config, out, opts={}, progress=Progress(enabled=False), jobs=jobs)
    return found, out.getvalue()


def single_threaded(body: Callable[..., Any], *args: Any) -> Any:
    """Run `body` in a fresh interpreter, single-threaded as `wxgate audit` is, so that
    the parts' processes are forked as they are there (this test process holds the e2e
    servers' threads, and a fork beside threads may deadlock). What it raises is raised
    here."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(body, *args).result(timeout=120)


def whole_then_parts(tmp_path: Path, jobs: int) -> tuple[Replayed, str, Replayed, str]:
    replay_module.MIN_PART_FLOWS = 5
    return (*run(tmp_path, jobs=1), *run(tmp_path, jobs=jobs))


@pytest.mark.parametrize("jobs", [2, 3, 7])
def test_a_capture_replayed_in_parts_logs_exactly_what_one_replay_logs(
        tmp_path: Path, jobs: int):
    whole, one, parted, many = single_threaded(whole_then_parts, tmp_path, jobs)
    assert (whole.parts, parted.parts) == (1, jobs)
    assert lines(many) == lines(one)
    assert parted.stats == whole.stats and parted.errors == whole.errors == []
    rules = Counter(json.loads(line).get("rule") for line in one.splitlines())
    # Not a vacuous comparison: the calls over the limit, the socket, the timeouts.
    assert rules == {"concurrency.exceeded": 27, "tls.untrusted": 20, "timeout.exceeded": 6,
                     "domain.not_listed": 5, "scheme.insecure": 5}


def test_a_part_starts_warm_at_the_earliest_call_still_in_flight_at_its_cut():
    capture = Capture(Path("x.mitm"), "flows")
    # Five calls; the second runs until 10, across every later start.
    for start, end in [(0, 1), (1, 10), (2, 3), (3, 4), (4, 5), (5, 6)]:
        capture.starts.append(start)
        capture.ends.append(end)
        capture.offsets.append(0)
    assert capture.parts(2, min_flows=1) == [Part(0, 3, 0, 3.0), Part(3, 6, 1, math.inf)]
    assert capture.parts(2, min_flows=4) == [capture.whole()]  # too small to cut
    capture.ends[1] = math.inf  # never ended: in flight to the end of the capture
    assert capture.parts(3, min_flows=1)[2] == Part(4, 6, 1, math.inf)
    har = Capture(Path("x.har"), "har", starts=array("d", range(20)))
    assert har.parts(4, min_flows=1) == [har.whole()]


def _cold(self: Capture, wanted: int, min_flows: int = 0) -> list[Part]:
    """Two parts, the second without its warm-up."""
    middle = self.count // 2
    return [Part(0, middle, 0, self.starts[self.order()[middle]]),
            Part(middle, self.count, middle)]


def whole_then_cold_parts(tmp_path: Path) -> tuple[Replayed, str, Replayed, str]:
    path = tmp_path / "session.mitm"
    write_flows(path, mixed_session())
    with path.open("ab") as fo:
        fo.write(b"123456:{cut short")  # the damage is still reported after the fallback
    one = run(tmp_path, jobs=1)
    Capture.parts = _cold  # type: ignore[method-assign]
    return (*one, *run(tmp_path, jobs=2))


def test_a_cut_whose_slots_do_not_match_is_replayed_whole(tmp_path: Path):
    """Parts that skip their warm-up rebuild too few calls in flight at the cut: the check
    sees it, and the capture is replayed again in one process, with the same lines."""
    whole, one, found, out = single_threaded(whole_then_cold_parts, tmp_path)
    assert found.parts == 1
    assert lines(out) == lines(one)
    assert found.damage and found.damage == whole.damage


def _broken_in_a_worker(*args: Any) -> Replayed:
    if multiprocessing.parent_process() is not None and \
            multiprocessing.current_process().name.startswith("wxgate-audit-"):
        raise MemoryError("out of memory")
    return _REPLAY_PART(*args)


_REPLAY_PART = replay_module._replay_part


def parts_with_a_broken_worker(tmp_path: Path) -> str:
    replay_module.MIN_PART_FLOWS = 5
    replay_module._replay_part = _broken_in_a_worker
    try:
        run(tmp_path, jobs=2)
    except RuntimeError as exc:
        return str(exc)
    return "no error"


def test_a_part_that_fails_in_its_process_stops_the_audit_with_its_reason(tmp_path: Path):
    assert single_threaded(parts_with_a_broken_worker, tmp_path) == (
        "part 2 of session.mitm: MemoryError: out of memory")


def test_a_flow_saved_through_resolve_and_a_rewritten_referer_is_judged_as_the_client_sent_it(
        tmp_path: Path):
    """The saved request points at the resolve target and carries the canonical Referer:
    the audit gives it back the name, port and Referer the proxy recorded it was sent."""
    saved = make_flow("https://api.example.com/saved", start=T0,
                      headers={"User-Agent": MP["User-Agent"], "Referer": MP["Referer"]})
    saved.request.host, saved.request.port = "127.0.0.1", 9443
    saved.request.host_header = "api.example.com"
    saved.metadata.update({"wxgate_resolved_from": ["api.example.com", 443],
                           "wxgate_referer_sent": None})
    capture = open_capture(write_flows(tmp_path / "saved.mitm", [saved]))
    out = io.StringIO()
    replay(capture, load_config(write_config(tmp_path)), out, opts={},
           progress=Progress(enabled=False), jobs=1)
    found = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["rule"], e["host"], e["port"]) for e in found] == [
        ("referer.rewritten", "api.example.com", 443)]


def whole_then_parts_of_a_cut_file(tmp_path: Path) -> tuple[Replayed, str, Replayed, str]:
    path = tmp_path / "session.mitm"
    write_flows(path, mixed_session())
    with path.open("ab") as fo:
        fo.write(b"123456:{cut short")  # a record the file ends in the middle of
    return whole_then_parts(tmp_path, 3)


def test_a_file_cut_short_is_replayed_in_parts_up_to_the_damage_as_in_one_process(
        tmp_path: Path):
    whole, one, parted, many = single_threaded(whole_then_parts_of_a_cut_file, tmp_path)
    assert parted.parts == 3 and whole.damage and parted.damage == whole.damage
    assert "is cut short" in whole.damage
    assert lines(many) == lines(one) and parted.stats == whole.stats
