"""The control API answers on wxgate.local: loopback freely, others only with the token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mitmproxy.test import taddons
from wxgate import events
from wxgate.background import Background
from wxgate.control_api import ControlApi

from .addon_helpers import APPID, CONFIG, mp_flow, runtime_for


def _call(tmp_path: Path, peer: str, token: str | None, auth: str | None):
    text = CONFIG + (f"control:\n  token: {token}\n" if token else "")
    runtime = runtime_for(tmp_path, text)
    events.configure("off")
    api = ControlApi(runtime, Background(runtime))
    with taddons.context(api):
        flow = mp_flow("http://wxgate.local/status")
        flow.client_conn.peername = (peer, 50000)
        if auth:
            flow.request.headers["Authorization"] = auth
        api.requestheaders(flow)
    assert flow.response is not None
    return flow.response.status_code, json.loads(flow.response.content)


def test_loopback_gets_status_without_token(tmp_path: Path):
    code, body = _call(tmp_path, "127.0.0.1", None, None)
    assert code == 200
    assert body["apps"][APPID]["inflight"] == 0 and body["mode"] == "enforce"


@pytest.mark.parametrize(
    ("token", "auth", "expected"),
    [(None, None, 401), ("s3cret", None, 401), ("s3cret", "Bearer wrong", 401),
     ("s3cret", "Bearer s3cret", 200)],
    ids=["no token configured", "no header", "wrong token", "right token"],
)
@pytest.mark.parametrize("peer", ["192.168.1.23", "127.0.0.2"])
def test_non_loopback_caller_needs_the_token(tmp_path: Path, token: str | None,
                                            auth: str | None, expected: int, peer: str):
    code, _ = _call(tmp_path, peer, token, auth)
    assert code == expected


def test_violations_are_paged_with_limit_and_since(tmp_path: Path):
    runtime = runtime_for(tmp_path)
    events.configure("off")
    api = ControlApi(runtime, Background(runtime))
    start = events.RECENT.seq
    for i in range(3):
        events.logger().warning("violation", rule="domain.not_listed", n=i)

    def get(query: str) -> tuple[int, dict[str, object]]:
        with taddons.context(api):
            flow = mp_flow(f"http://wxgate.local/violations?{query}")
            flow.client_conn.peername = ("127.0.0.1", 50000)
            api.requestheaders(flow)
        assert flow.response is not None
        return flow.response.status_code, json.loads(flow.response.content)

    code, first = get(f"since={start}&limit=2")
    assert code == 200 and [v["n"] for v in first["violations"]] == [0, 1]
    assert first["more"] is True
    code, rest = get(f"since={first['last']}&limit=2")
    assert [v["n"] for v in rest["violations"]] == [2] and rest["more"] is False
    assert get("limit=0")[0] == 400
    assert get("limit=x")[0] == 400


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Content-Type": "application/json"}, 201),
    ({"Content-Type": "text/plain"}, 403),
    ({"Content-Type": "application/json", "Origin": "https://evil.example"}, 403),
])
def test_state_changes_need_json_and_no_origin(tmp_path: Path, headers: dict[str, str],
                                               expected: int):
    runtime = runtime_for(tmp_path)
    events.configure("off")
    api = ControlApi(runtime, Background(runtime))
    with taddons.context(api):
        flow = mp_flow("http://wxgate.local/faults", method="POST", **{
            k.replace("-", "_"): v for k, v in headers.items()})
        flow.client_conn.peername = ("127.0.0.1", 50000)
        flow.request.content = json.dumps({"match": {}, "delay_ms": 1}).encode()
        api.requestheaders(flow)
        if flow.response is None:  # a body is coming: answered in `request`
            api.request(flow)
    assert flow.response is not None and flow.response.status_code == expected


def test_a_control_call_that_fails_is_answered_500_never_forwarded(tmp_path: Path):
    runtime = runtime_for(tmp_path)
    events.configure("off")
    api = ControlApi(runtime, Background(runtime))
    api.handle = None  # type: ignore[assignment]  # any failure inside the API
    with taddons.context(api):
        flow = mp_flow("http://wxgate.local/status")
        api.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 500
