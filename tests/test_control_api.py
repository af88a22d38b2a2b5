"""The control API answers on wxgate.local: loopback freely, others only with the token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mitmproxy.test import taddons

from addons import events
from addons.background import Background
from addons.control_api import ControlApi

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
