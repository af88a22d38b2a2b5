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


def host_header(req: http.Request) -> str | None:
    """What `req.host_header` gives: HTTP/2's and HTTP/3's :authority, else the Host header."""
    if (req.is_http2 or req.is_http3) and req.data.authority:
        return req.authority
    return header_value(req.data.headers.fields, b"host")
