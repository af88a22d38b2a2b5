"""The raw header reads give what mitmproxy's own lookups give, header for header."""

from __future__ import annotations

import pytest
from mitmproxy import http
from mitmproxy.test import tutils
from wxgate.raw_headers import header_value, host_header

FIELDS = [
    [],
    [(b"Host", b"api.example.com")],
    [(b"HOST", b"api.example.com:8443"), (b"Accept", b"*/*")],
    [(b"host", b"a.example.com"), (b"Host", b"b.example.com")],  # repeated: joined
    [(b"Content-Type", b"application/json; charset=\xe4"), (b"X-Host", b"x")],  # not UTF-8
]


@pytest.mark.parametrize("fields", FIELDS)
@pytest.mark.parametrize("name", [b"host", b"content-type", b"accept"])
def test_header_value_is_what_headers_get_gives(fields: list[tuple[bytes, bytes]], name: bytes):
    assert header_value(fields, name) == http.Headers(fields).get(name.decode())


@pytest.mark.parametrize("http_version", ["HTTP/1.1", "HTTP/2.0", "HTTP/3"])
@pytest.mark.parametrize("authority", ["", "api.example.com:443"])
@pytest.mark.parametrize("fields", FIELDS[:4])
def test_host_header_is_what_the_property_gives(
        http_version: str, authority: str, fields: list[tuple[bytes, bytes]]):
    req = tutils.treq()
    req.http_version = http_version
    req.authority = authority
    req.headers = http.Headers(fields)
    assert host_header(req) == req.host_header
