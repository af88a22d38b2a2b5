"""The canonical Referer reaches the backend whatever the client sent, and connectSocket
is held to wss://, the socket whitelist and 5 open sockets per app — through the real
proxy, with a real WebSocket client and a real wss echo server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from .harness import (
    APPID,
    MP_HEADERS,
    REFERER,
    Certs,
    Proxy,
    Upstream,
    base_config,
    open_socket,
    send,
    socket_refused,
    start_proxy,
    status,
)

pytestmark = pytest.mark.e2e

UA = MP_HEADERS["User-Agent"]


@pytest.fixture(scope="module")
def proxy(session_dir: Path, certs: Certs, ws_resolve_map: dict[str, str]
          ) -> Iterator[Proxy]:
    proxy = start_proxy(session_dir / "referer-sockets", base_config(ws_resolve_map),
                        certs.ca_file)
    yield proxy
    proxy.stop()


@pytest.mark.parametrize(
    ("sent", "rules"),
    [
        (None, ["referer.rewritten"]),
        ("https://evil.example.net/page.html", ["referer.invalid", "referer.rewritten"]),
        (REFERER, []),
    ],
    ids=["none", "forged", "canonical"],
)
def test_upstream_receives_the_canonical_referer(
    proxy: Proxy, upstream: Upstream, sent: str | None, rules: list[str],
):
    path = f"/referer-{len(rules)}"
    headers = {"User-Agent": UA}
    if sent:
        headers["Referer"] = sent
    reply = send(proxy, f"https://api.example.com{path}", headers)
    assert reply.status == 200
    seen = [r for r in upstream.requests if r["path"] == path][-1]
    assert seen["headers"]["Referer"] == REFERER
    lines = proxy.wait_for_log(lambda e: e.get("event") == "violation"
                               and str(e["url"]).endswith(path), timeout=1 if not rules else 5)
    assert [line["rule"] for line in lines] == rules
    assert all(line["action"] == "reported" for line in lines)
    assert {line["severity"] for line in lines} <= {"info", "warning"}


def test_unconfigured_appid_is_refused(proxy: Proxy, upstream: Upstream):
    before = upstream.snapshot()
    other = "https://servicewechat.com/wx1111111111111111/0/page-frame.html"
    reply = send(proxy, "https://api.example.com/other-app", {"Referer": other, "User-Agent": UA})
    assert reply.status is None
    assert upstream.snapshot() == before
    assert [v["rule"] for v in proxy.violations() if v["url"].endswith("/other-app")] == [
        "referer.appid_mismatch"]


def test_allowed_socket_echoes(proxy: Proxy):
    with open_socket(proxy, "wss://ws.example.com/echo") as ws:
        ws.send("ping")
        assert ws.recv(timeout=5) == "ping"


@pytest.mark.parametrize(
    ("url", "rule"),
    [("ws://ws.example.com/plain", "scheme.insecure"),
     ("wss://evil.example.net/socket", "domain.not_listed")],
    ids=["ws-scheme", "unlisted-domain"],
)
def test_bad_socket_is_refused_and_logged(proxy: Proxy, url: str, rule: str):
    assert socket_refused(proxy, url)
    # Generous: on a loaded machine the refusal may come as a client-side timeout first.
    lines = proxy.wait_for_log(lambda e: e.get("event") == "violation"
                               and str(e["url"]).endswith(url.rsplit("/", 1)[1]), timeout=15)
    assert [(line["rule"], line["api"]) for line in lines] == [(rule, "connectSocket")]
    assert lines[0]["errMsg"] == "connectSocket:fail url not in domain list"


def test_sixth_socket_is_refused_and_a_closed_one_frees_its_place(proxy: Proxy):
    with ExitStack() as stack:
        sockets = [stack.enter_context(open_socket(proxy, f"wss://ws.example.com/s{i}"))
                   for i in range(5)]
        for i, ws in enumerate(sockets):
            ws.send(f"m{i}")
            assert ws.recv(timeout=5) == f"m{i}"
        assert status(proxy)["apps"][APPID]["sockets"] == 5
        assert socket_refused(proxy, "wss://ws.example.com/sixth")
        # Generous, as above: under load the client may give up before the proxy logs.
        lines = proxy.wait_for_log(lambda e: e.get("rule") == "socket.exceeded", timeout=15)
        assert len(lines) == 1
        assert lines[0]["errMsg"] == "connectSocket:fail max connected"
        assert lines[0]["errno"] == 600007
        sockets.pop().close()
        for _ in range(50):
            if status(proxy)["apps"][APPID]["sockets"] == 4:
                break
            time.sleep(0.1)
        with open_socket(proxy, "wss://ws.example.com/replacement") as ws:
            ws.send("again")
            assert ws.recv(timeout=5) == "again"
