"""Header values read straight from mitmproxy's raw `(name, value)` fields.

`Headers.get` decodes and lower-cases every header name on each lookup: about 2 us a
lookup, several times on every call. These give the same answers, for the few headers
every call reads.
"""

from __future__ import annotations

from collections.abc import Iterable

from mitmproxy import http


def header_value(fields: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """What `headers.get(name)` gives: None when absent, repeated values joined with ", ".
    `name` is lower case."""
    found: str | None = None
    for key, value in fields:
        if key.lower() == name:
            text = value.decode("utf-8", "surrogateescape")
            found = text if found is None else f"{found}, {text}"
    return found


def host_header(req: http.Request) -> str | None:
    """What `req.host_header` gives: HTTP/2's and HTTP/3's :authority, else the Host header."""
    if (req.is_http2 or req.is_http3) and req.data.authority:
        return req.authority
    return header_value(req.data.headers.fields, b"host")
