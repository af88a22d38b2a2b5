"""The capture index: each flow's start and end read from its record without loading it,
as `start_of` and `end_of` read them from the loaded flow."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.flow import Error
from mitmproxy.io import FlowReader
from wxgate.capture import end_of, open_capture, start_of

from .audit_helpers import MP, T0, make_flow, write_flows


def unanswered() -> http.HTTPFlow:
    flow = make_flow("https://api.example.com/hanging", start=T0, headers=MP)
    flow.response = None
    return flow


def open_socket() -> http.HTTPFlow:
    flow = make_flow("wss://ws.example.com/open", start=T0, websocket_for=5.0, headers=MP)
    assert flow.websocket is not None
    flow.websocket.timestamp_end = None
    return flow


def failed_socket() -> http.HTTPFlow:
    flow = open_socket()
    flow.error = Error("connection reset", T0 + 7)
    return flow


def answered_without_end() -> http.HTTPFlow:
    flow = make_flow("https://api.example.com/no-end", start=T0, duration=2.0, headers=MP)
    assert flow.response is not None
    flow.response.timestamp_end = None
    return flow


@pytest.mark.parametrize("flow", [
    make_flow("https://api.example.com/a", start=T0, duration=1.5, headers=MP),
    make_flow("https://api.example.com/b", start=T0, duration=3.0, headers=MP,
              error="connection refused"),
    make_flow("wss://ws.example.com/c", start=T0, websocket_for=60.0, headers=MP),
    unanswered(), open_socket(), failed_socket(), answered_without_end(),
], ids=["answered", "failed", "socket-closed", "unanswered", "socket-open", "socket-failed",
        "answer-without-end"])
def test_the_index_reads_a_records_start_and_end_as_the_loaded_flow_gives_them(
        tmp_path: Path, flow: http.HTTPFlow):
    path = write_flows(tmp_path / "one.mitm", [flow])
    with path.open("rb") as fo:
        loaded = next(iter(FlowReader(fo).stream()))
    assert isinstance(loaded, http.HTTPFlow)
    capture = open_capture(path)
    assert (capture.starts[0], capture.ends[0]) == (start_of(loaded), end_of(loaded))
    # A call the capture never saw end is in flight to its end.
    assert math.isinf(capture.ends[0]) == (loaded.response is None and loaded.error is None
                                           or loaded.websocket is not None
                                           and loaded.websocket.timestamp_end is None
                                           and loaded.error is None)
