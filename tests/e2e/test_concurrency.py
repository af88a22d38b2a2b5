"""Per-app concurrency through the real proxy, against an upstream that records its own
peak of simultaneous requests: 10 in flight per app, queued or failed beyond that,
every slot given back whatever ends the call."""

from __future__ import annotations

import random
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import (
    APPID,
    MP_HEADERS,
    Certs,
    Proxy,
    Upstream,
    base_config,
    burst,
    start_proxy,
    status,
)

pytestmark = pytest.mark.e2e

APPID2 = "wxfedcba9876543210"
UA = MP_HEADERS["User-Agent"]


def _referer(appid: str) -> dict[str, str]:
    return {"Referer": f"https://servicewechat.com/{appid}/0/page-frame.html", "User-Agent": UA}


def _two_apps(resolve: dict[str, str], **limits: object) -> dict[str, object]:
    config = base_config(resolve, limits={"concurrency": 10, **limits})
    second = dict(config["apps"][0], appid=APPID2)
    config["apps"] = [config["apps"][0], second]
    return config


@pytest.fixture(scope="module")
def queueing(session_dir: Path, certs: Certs, resolve_map: dict[str, str]) -> Iterator[Proxy]:
    proxy = start_proxy(session_dir / "queue", _two_apps(resolve_map), certs.ca_file)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def failing(session_dir: Path, certs: Certs, resolve_map: dict[str, str]) -> Iterator[Proxy]:
    proxy = start_proxy(session_dir / "fail", _two_apps(resolve_map, over_concurrency="fail"),
                        certs.ca_file)
    yield proxy
    proxy.stop()


def _slow(n: int, ms: int, tag: str) -> list[str]:
    return [f"https://api.example.com/slow?ms={ms}&tag={tag}{i}" for i in range(n)]


def test_fifteen_at_once_queue_to_ten_and_all_succeed(queueing: Proxy, upstream: Upstream):
    upstream.wait_idle()
    replies = burst(queueing, _slow(15, 1500, "q"), _referer(APPID))
    assert [r.status for r in replies] == [200] * 15, [r.error for r in replies]
    assert upstream.peak[APPID] == 10
    queued = [v for v in queueing.violations("concurrency.exceeded") if "tag=q" in v["url"]]
    assert len(queued) == 5
    assert {(v["action"], v["severity"]) for v in queued} == {("queued", "warning")}


def test_fail_mode_fails_exactly_the_five_over_the_limit(failing: Proxy, upstream: Upstream):
    upstream.wait_idle()
    replies = burst(failing, _slow(15, 1500, "f"), _referer(APPID))
    assert sorted(r.status or 0 for r in replies) == [0] * 5 + [200] * 10
    assert upstream.peak[APPID] == 10
    failed = [v for v in failing.violations("concurrency.exceeded") if "tag=f" in v["url"]]
    assert len(failed) == 5
    assert {(v["action"], v["severity"], v["errMsg"], v["errno"]) for v in failed} == {
        ("blocked", "error", "request:fail exceed max task count", 600007)}


def test_two_apps_get_ten_slots_each(queueing: Proxy, upstream: Upstream):
    upstream.wait_idle()
    urls = _slow(15, 1500, "a") + _slow(15, 1500, "b")
    headers = [_referer(APPID)] * 15 + [_referer(APPID2)] * 15
    replies = burst(queueing, urls, headers)
    assert [r.status for r in replies] == [200] * 30
    assert upstream.peak[APPID] == 10 and upstream.peak[APPID2] == 10
    assert upstream.peak["*"] == 20


def _abort_at_random(proxy: Proxy, rng: random.Random) -> None:
    """CONNECT, TLS, send a slow request, then vanish at a random moment."""
    ctx = ssl.create_default_context(cafile=str(proxy.ca_file))
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    try:
        raw.sendall(b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n")
        if b"200" not in raw.recv(1024):
            return
        tls = ctx.wrap_socket(raw, server_hostname="api.example.com")
        ms = rng.choice([0, 5, 50, 200])
        request = (f"GET /slow?ms={ms}&tag=abort HTTP/1.1\r\nHost: api.example.com\r\n"
                   f"Referer: {_referer(APPID)['Referer']}\r\nUser-Agent: {UA}\r\n\r\n")
        tls.sendall(request.encode())
        moment = rng.random()
        if moment < 0.5:
            time.sleep(moment * 0.3)  # abort while queued or in flight
        else:
            tls.recv(4096)  # abort after (part of) the response
        tls.close()
    except OSError:
        pass
    finally:
        raw.close()


def test_random_client_aborts_leak_no_slot(queueing: Proxy, upstream: Upstream):
    """1,000 calls aborted at random moments leave every in-flight count at 0, and a
    fresh burst still gets all 10 slots."""
    rng_seed = random.Random(1234)
    seeds = [rng_seed.random() for _ in range(1000)]
    work = iter(seeds)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                seed = next(work, None)
            if seed is None:
                return
            _abort_at_random(queueing, random.Random(seed))

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        apps = status(queueing)["apps"]
        if all(a["inflight"] == 0 for a in apps.values()):
            break
        time.sleep(0.2)
    assert {appid: a["inflight"] for appid, a in status(queueing)["apps"].items()} == {
        APPID: 0, APPID2: 0}
    upstream.wait_idle(20)
    replies = burst(queueing, _slow(15, 1500, "after"), _referer(APPID))
    assert [r.status for r in replies] == [200] * 15
    assert upstream.peak[APPID] == 10
