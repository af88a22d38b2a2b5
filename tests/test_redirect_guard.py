"""Where a Location header points, absolute or relative, as the client resolves it."""

from __future__ import annotations

import pytest
from wxgate.policy.urls import Target
from wxgate.redirect_guard import redirect_target

BASE = "https://api.example.com/a/b?x=1"


@pytest.mark.parametrize(
    ("location", "url", "target"),
    [
        ("https://evil.example.net/x", "https://evil.example.net/x",
         Target("https", "evil.example.net", 443, None)),
        ("/root", "https://api.example.com/root", Target("https", "api.example.com", 443, None)),
        ("sibling", "https://api.example.com/a/sibling",
         Target("https", "api.example.com", 443, None)),
        ("//cdn.example.com/y", "https://cdn.example.com/y",
         Target("https", "cdn.example.com", 443, None)),
        ("http://api.example.com:8080/", "http://api.example.com:8080/",
         Target("http", "api.example.com", 8080, 8080)),
    ],
    ids=["absolute", "absolute-path", "relative-path", "scheme-relative", "http-with-port"],
)
def test_redirect_target(location: str, url: str, target: Target):
    assert redirect_target(BASE, location) == (url, target)


def test_unusable_location_is_ignored():
    assert redirect_target(BASE, "mailto:someone@example.com") is None
