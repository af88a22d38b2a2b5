"""The control API answers on wxgate.local: loopback freely, others only with the token."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from mitmproxy.test import taddons
from wxgate import events
from wxgate.background import Background
from wxgate.control_api import ApiCall, ControlApi

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
        api.responseheaders(flow)  # a body was coming: answered once it is in
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


def _api(tmp_path: Path) -> tuple[ControlApi, Background]:
    runtime = runtime_for(tmp_path)
    events.configure("off")
    background = Background(runtime)
    return ControlApi(runtime, background), background


def _post(api: ControlApi, path: str) -> tuple[int, dict[str, object]]:
    status, payload = api.handle(ApiCall("POST", *_split(path),
                                      {"content-type": "application/json"}, b"", "127.0.0.1"))
    assert isinstance(payload, dict)
    return status, payload


def _split(path: str) -> tuple[str, dict[str, list[str]]]:
    parts = urlsplit(path)
    return parts.path, parse_qs(parts.query)


def test_background_names_one_device_by_client(tmp_path: Path):
    api, background = _api(tmp_path)

    async def scenario() -> None:
        code, body = _post(api, f"/apps/{APPID}/background?client=::ffff:192.168.1.23")
        assert (code, body) == (200, {"appid": APPID, "client": "192.168.1.23",
                                      "background": True})
        devices = api.status()["devices"]
        assert devices["192.168.1.23"]["apps"][APPID]["background"] is True
        assert api.status()["apps"][APPID]["background"] is False
        assert api.status()["apps"][APPID]["background_devices"] == ["192.168.1.23"]
        code, body = _post(api, f"/apps/{APPID}/foreground?client=192.168.1.23")
        assert (code, body["background"]) == (200, False)

    with taddons.context(api, background):
        asyncio.run(scenario())


@pytest.mark.parametrize(("query", "needle"), [
    ("client=phone-1", "must be an IP address"),
    ("client=10.0.0.1&client=10.0.0.2", "one device per call"),
])
def test_background_refuses_a_client_that_is_not_one_address(tmp_path: Path, query: str,
                                                              needle: str):
    api, _ = _api(tmp_path)
    code, body = _post(api, f"/apps/{APPID}/background?{query}")
    assert code == 400 and needle in str(body["error"])


def test_status_lists_each_device_with_its_apps_calls_and_rules(tmp_path: Path):
    api, _ = _api(tmp_path)
    runtime = api.runtime
    runtime.devices.start("192.168.1.23", APPID, "f1")
    runtime.inflight.force_acquire(("192.168.1.23", APPID, "shared"), "f1")
    runtime.sockets.force_acquire(("192.168.1.24", APPID), "s1")
    runtime.devices.start("192.168.1.24", APPID, "s1")
    runtime.count_violation("192.168.1.24", "socket.exceeded", "error", "blocked")
    devices = api.status()["devices"]
    assert list(devices) == ["192.168.1.23", "192.168.1.24"]
    first, second = devices["192.168.1.23"], devices["192.168.1.24"]
    assert (first["inflight"], first["sockets"], first["apps"][APPID]["inflight_by_pool"]) == (
        1, 0, {"shared": 1})
    assert (second["inflight"], second["sockets"], second["violations"]) == (
        0, 1, {"socket.exceeded": 1})
    assert api.status()["apps"][APPID]["inflight"] == 1
    assert api.status()["apps"][APPID]["sockets"] == 1


def _body_to_come(path: str):
    """A control POST from loopback at its head: its body not read yet."""
    flow = mp_flow(f"http://wxgate.local{path}", method="POST", Content_Type="application/json")
    flow.client_conn.peername = ("127.0.0.1", 50000)
    flow.request.data.content = None
    return flow


def test_an_http2_post_without_content_length_is_answered_with_its_body(tmp_path: Path):
    """HTTP/2 needs no content-length: the body still arrives before the answer."""
    api, _ = _api(tmp_path)
    with taddons.context(api):
        flow = _body_to_come("/faults")
        flow.request.http_version = "HTTP/2.0"
        flow.request.headers.pop("content-length", None)
        flow.request.stream = True  # as stream_large_bodies may have decided
        api.requestheaders(flow)
        # Held from any upstream, and its body read whole, until it is answered.
        assert flow.response is not None and flow.request.stream is False
        flow.request.content = json.dumps({"match": {}, "delay_ms": 1}).encode()
        api.responseheaders(flow)
    assert flow.response is not None and flow.response.status_code == 201
    assert json.loads(flow.response.content)["ids"] == [1]


def test_a_control_call_whose_client_goes_before_its_body_is_in_leaves_nothing_behind(
        tmp_path: Path):
    api, _ = _api(tmp_path)
    with taddons.context(api):
        flow = _body_to_come("/faults")
        flow.request.headers["content-length"] = "100"
        api.requestheaders(flow)
        other = mp_flow("https://api.example.com/x")
        api.responseheaders(other)  # not a control call: left as it was
        assert other.response is None
        api.error(flow)
        assert api._bodies_to_come == {}
