"""Keeps very long URLs from piling up in the standard library's parse cache (SPEC §8).

Python's `urllib.parse.urlsplit` remembers its last 128 distinct inputs, and mitmproxy
parses every absolute-form request line and query through it: 128 hostile 1 MB URLs hold
about 256 MB for as long as nothing else replaces them. A URL over the threshold clears
the cache once it has been parsed.
"""

from __future__ import annotations

import urllib.parse

from mitmproxy import http

LONG_URL = 8 * 1024


class LongUrls:
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if len(flow.request.path) > LONG_URL:
            # typeshed hides the lru_cache wrapper behind urlsplit's overloads
            getattr(urllib.parse.urlsplit, "cache_clear", lambda: None)()

    # Later hooks (redirects, the control API) parse it again.
    response = requestheaders
