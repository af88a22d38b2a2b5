"""Redirects re-checked hop by hop, response body rules, and the concurrency pool
setting — through the real proxy against local upstreams."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from .harness import (
    APPID,
    MP_HEADERS,
    Certs,
    Proxy,
    Upstream,
    base_config,
    burst,
    send,
    start_proxy,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def unlisted_upstream(certs: Certs) -> Iterator[Upstream]:
    server = Upstream(certs.server_context)
    yield server
    server.close()


@pytest.fixture(scope="module")
def proxy(session_dir: Path, certs: Certs, resolve_map: dict[str, str],
          unlisted_upstream: Upstream) -> Iterator[Proxy]:
    resolve = {**resolve_map, "evil.example.net": f"127.0.0.1:{unlisted_upstream.port}"}
    proxy = start_proxy(session_dir / "redirects", base_config(resolve), certs.ca_file)
    yield proxy
    proxy.stop()


def _redirect(to: str) -> str:
    return f"https://api.example.com/respond?status=302&location={quote(to, safe='')}"


def test_redirect_to_an_unlisted_host_fails_and_is_never_followed(
    proxy: Proxy, unlisted_upstream: Upstream,
):
    before = unlisted_upstream.snapshot()
    reply = send(proxy, _redirect("https://evil.example.net/landing"), MP_HEADERS)
    assert reply.status is None
    assert unlisted_upstream.snapshot() == before
    lines = proxy.wait_for_log(lambda e: e.get("rule") == "domain.redirect_not_listed")
    assert len(lines) == 1
    line = lines[0]
    assert line["location"] == "https://evil.example.net/landing"
    assert "evil.example.net/landing" in line["detail"] and line["hop_rule"] == (
        "domain.not_listed")
    assert line["errMsg"] == "request:fail redirect url not in domain list"
    assert line["errno"] == 600002 and line["action"] == "blocked"


@pytest.mark.parametrize(
    "location",
    ["https://api.example.com:8443/next", "/relative/next", "next-in-same-dir"],
    ids=["listed-host-with-listed-port", "relative-absolute-path", "relative-path"],
)
def test_redirect_inside_the_whitelist_arrives_as_a_3xx(proxy: Proxy, location: str):
    reply = send(proxy, _redirect(location), MP_HEADERS)
    assert reply.status == 302
    assert reply.headers["location"] == location


def test_redirect_to_a_port_the_entry_does_not_allow_fails(proxy: Proxy):
    reply = send(proxy, _redirect("https://api.example.com:9999/x"), MP_HEADERS)
    assert reply.status is None
    lines = proxy.wait_for_log(lambda e: e.get("rule") == "domain.redirect_not_listed"
                               and e.get("location") == "https://api.example.com:9999/x")
    assert lines and lines[0]["hop_rule"] == "domain.port_mismatch"


@pytest.mark.parametrize(
    ("query", "rule"),
    [
        ("ctype=text%2Fplain%3B%20charset%3Dgbk&body=" + "你好".encode("gbk").hex(),
         "response.non_utf8"),
        ("ctype=application%2Fjson&body=" + ("\ufeff\ufeff{}".encode().hex()), "response.bom"),
        ("status=404&ctype=text%2Fplain&body=" + b"nope".hex(), "response.status"),
    ],
    ids=["gbk", "two-boms", "404"],
)
def test_response_rule_is_logged_and_the_response_delivered(
    proxy: Proxy, query: str, rule: str,
):
    reply = send(proxy, f"https://api.example.com/respond?{query}&case={rule}", MP_HEADERS)
    assert reply.status in (200, 404)
    lines = proxy.wait_for_log(lambda e: e.get("event") == "violation"
                               and e["url"].endswith(f"case={rule}"))
    assert [(line["rule"], line["action"]) for line in lines] == [(rule, "reported")]


@pytest.mark.parametrize(("pool", "peak"), [("per_api", 20), ("shared", 10)])
def test_concurrency_pool_per_api_or_shared(
    session_dir: Path, certs: Certs, resolve_map: dict[str, str], upstream: Upstream,
    pool: str, peak: int,
):
    config = base_config(resolve_map, limits={"concurrency_pool": pool})
    proxy = start_proxy(session_dir / f"pool-{pool}", config, certs.ca_file)
    try:
        upstream.wait_idle()
        urls = ([f"https://api.example.com/slow?ms=1500&p={pool}{i}" for i in range(10)]
                + [f"https://upload.example.com/slow?ms=1500&p={pool}u{i}" for i in range(10)])
        multipart = {**MP_HEADERS, "Content-Type": "multipart/form-data; boundary=b"}
        headers = [MP_HEADERS] * 10 + [multipart] * 10
        replies = burst(proxy, urls, headers, methods=["GET"] * 10 + ["POST"] * 10)
        assert [r.status for r in replies] == [200] * 20
        assert upstream.peak[APPID] == peak
    finally:
        proxy.stop()
