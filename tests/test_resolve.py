"""Resolve points a request at its `resolve:` target in place, leaving the request as
mitmproxy's own setters (`req.host, req.port = target`, then the Host header given back)
would: the Host header, HTTP/2's :authority and an absolute-form authority alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.test import taddons
from wxgate.resolve import Resolve
from wxgate.state import RESOLVED_FROM

from .addon_helpers import CONFIG, mp_flow, runtime_for

TARGET = ("127.0.0.1", 9443)
RESOLVING = CONFIG + "resolve:\n  api.example.com: 127.0.0.1:9443\n"


def by_setters(req: http.Request) -> http.Request:
    """The request after what Resolve used to do, through mitmproxy's setters."""
    req = req.copy()
    host_header = req.host_header
    req.host, req.port = TARGET
    req.host_header = host_header
    return req


def request(http_version: str, authority: str, host_header: str | None) -> http.HTTPFlow:
    flow = mp_flow("https://api.example.com/x")
    req = flow.request
    req.http_version = http_version
    req.authority = authority
    if host_header is None:
        req.headers.pop("Host", None)
    else:
        req.headers["Host"] = host_header
    return flow


@pytest.mark.parametrize("http_version, authority, host_header", [
    ("HTTP/1.1", "", "api.example.com"),  # origin form, through CONNECT
    ("HTTP/1.1", "api.example.com:443", "api.example.com"),  # absolute form
    ("HTTP/1.1", "api.example.com", None),
    ("HTTP/2.0", "api.example.com", None),  # :authority only
    ("HTTP/2.0", "api.example.com:443", "api.example.com"),
    ("HTTP/2.0", "", "api.example.com"),  # a Host header instead of :authority
])
def test_request_is_pointed_at_the_target_as_the_setters_would(
        tmp_path: Path, http_version: str, authority: str, host_header: str | None):
    flow = request(http_version, authority, host_header)
    expected = by_setters(flow.request)
    resolve = Resolve(runtime_for(tmp_path, RESOLVING))
    with taddons.context(resolve):
        resolve.requestheaders(flow)
    req = flow.request
    assert (req.host, req.port) == TARGET
    assert req.data.authority == expected.data.authority
    assert req.headers.fields == expected.headers.fields
    assert flow.metadata[RESOLVED_FROM] == ("api.example.com", 443)


def test_a_name_not_in_resolve_is_left_alone(tmp_path: Path):
    flow = mp_flow("https://cdn.example.com/x")
    resolve = Resolve(runtime_for(tmp_path, RESOLVING))
    with taddons.context(resolve):
        resolve.requestheaders(flow)
    assert (flow.request.host, flow.request.port) == ("cdn.example.com", 443)
    assert RESOLVED_FROM not in flow.metadata
