"""Header values read straight from mitmproxy's raw `(name, value)` fields.

`Headers.get` decodes and lower-cases every header name on each lookup: about 2 us a
lookup, several times on every call. These give the same answers, for the few headers
every call reads.
"""

from __future__ import annotations

from collections.abc import Iterable

from mitmproxy import http


def header_values(fields: Iterable[tuple[bytes, bytes]], *names: bytes) -> list[str | None]:
    """What `headers.get(name)` gives for each of `names` (lower case), in one pass: None
    when absent, repeated values joined with ", "."""
    found: list[str | None] = [None] * len(names)
    for key, value in fields:
        lowered = key.lower()
        if lowered in names:
            at = names.index(lowered)
            text = value.decode("utf-8", "surrogateescape")
            before = found[at]
            found[at] = text if before is None else f"{before}, {text}"
    return found


def header_value(fields: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """What `headers.get(name)` gives; `name` is lower case."""
    return header_values(fields, name)[0]


_AUTHORITY_FIRST = (b"HTTP/2.0", b"HTTP/3")  # `is_http2`, `is_http3`


def host_header(req: http.Request) -> str | None:
    """What `req.host_header` gives: HTTP/2's and HTTP/3's :authority, else the Host header."""
    data = req.data
    if data.authority and data.http_version in _AUTHORITY_FIRST:
        return req.authority
    # `header_value(fields, b"host")` written out: every call asks, before it is identified.
    found = None
    for key, value in data.headers.fields:
        if key.lower() == b"host":
            text = value.decode("utf-8", "surrogateescape")
            found = text if found is None else f"{found}, {text}"
    return found
