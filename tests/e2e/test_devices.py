"""Several phones through one proxy (SPEC §3, §7): a device is a client address, and each
gets its own 10 calls in flight, its own 5 sockets and its own background state for the
same app. Clients bound to 127.0.0.2-127.0.0.6 stand in for phones on the Wi-Fi; the
upstream records its own peak of simultaneous requests."""

from __future__ import annotations

import http.client
import json
import re
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from .harness import (
    APPID,
    MP_HEADERS,
    Certs,
    Proxy,
    Reply,
    Upstream,
    base_config,
    open_socket,
    send,
    socket_refused,
    start_proxy,
    status,
)

pytestmark = pytest.mark.e2e

PHONES = [f"127.0.0.{i}" for i in range(2, 7)]
UA = MP_HEADERS["User-Agent"]


def send_from(proxy: Proxy, source: str, url: str, timeout: float = 30.0,
              headers: dict[str, str] | None = None) -> Reply:
    """One wx.request from the phone at `source`, through the proxy (CONNECT + TLS)."""
    parts = urlsplit(url)
    ctx = ssl.create_default_context(cafile=str(proxy.ca_file))
    conn = http.client.HTTPSConnection("127.0.0.1", proxy.port, timeout=timeout, context=ctx,
                                       source_address=(source, 0))
    conn.set_tunnel(parts.hostname or "", parts.port or 443)
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""),
                     headers=headers or MP_HEADERS)
        resp = conn.getresponse()
        return Reply(resp.status, resp.read())
    except (OSError, http.client.HTTPException) as exc:
        return Reply(None, error=f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def burst_from(proxy: Proxy, calls: list[tuple[str, str]], timeout: float = 30.0
               ) -> list[Reply]:
    """Every (source, url) at once, one connection each, as concurrent wx.request calls."""
    replies: list[Reply | None] = [None] * len(calls)
    gate = threading.Barrier(len(calls))

    def one(i: int) -> None:
        gate.wait()
        replies[i] = send_from(proxy, *calls[i], timeout=timeout)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
    return [r or Reply(None, error="thread did not finish") for r in replies]


def _slow(phones: list[str], n: int, ms: int, tag: str) -> list[tuple[str, str]]:
    return [(phone, f"https://api.example.com/slow?ms={ms}&tag={tag}-{phone}-{i}")
            for phone in phones for i in range(n)]


def _wait(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(scope="module", params=["queue", "fail"])
def over_concurrency(request: pytest.FixtureRequest, session_dir: Path, certs: Certs,
                     resolve_map: dict[str, str]) -> Iterator[Proxy]:
    config = base_config(resolve_map, limits={"concurrency": 10,
                                              "over_concurrency": request.param})
    proxy = start_proxy(session_dir / f"devices-{request.param}", config, certs.ca_file)
    yield proxy
    proxy.stop()


@pytest.mark.parametrize("devices", [2, 5])
def test_each_device_gets_its_own_ten_calls_in_flight(
        over_concurrency: Proxy, upstream: Upstream, devices: int):
    proxy = over_concurrency
    upstream.wait_idle()
    tag = f"own{devices}"
    replies = burst_from(proxy, _slow(PHONES[:devices], 10, 5000, tag))
    assert [r.status for r in replies] == [200] * 10 * devices, [r.error for r in replies]
    assert upstream.peak[APPID] == 10 * devices
    assert [v for v in proxy.violations("concurrency.exceeded") if tag in v["url"]] == []


def test_the_eleventh_call_of_one_device_meets_the_limit_the_others_do_not(
        over_concurrency: Proxy, upstream: Upstream):
    proxy = over_concurrency
    upstream.wait_idle()
    replies = burst_from(proxy, _slow(PHONES[:1], 11, 2500, "eleven")
                         + _slow(PHONES[1:2], 10, 2500, "eleven"))
    assert upstream.peak[APPID] == 20
    over = [v for v in proxy.violations("concurrency.exceeded") if "eleven" in v["url"]]
    assert [v["client"] for v in over] == [PHONES[0]]
    if over[0]["action"] == "blocked":  # fail
        assert sorted(r.status or 0 for r in replies) == [0] + [200] * 20
    else:  # queue: it waits for one of its own device's calls, then succeeds
        assert [r.status for r in replies] == [200] * 21
    # Whatever ended each call, nothing is left running on either device.
    assert _wait(lambda: {p: d["running"] for p, d in status(proxy)["devices"].items()
                          if p in PHONES[:2]} == dict.fromkeys(PHONES[:2], 0))


@pytest.fixture(scope="module")
def sockets_proxy(session_dir: Path, certs: Certs, ws_resolve_map: dict[str, str]
                  ) -> Iterator[Proxy]:
    proxy = start_proxy(session_dir / "devices-sockets", base_config(ws_resolve_map),
                        certs.ca_file)
    yield proxy
    proxy.stop()


@pytest.mark.parametrize("devices", [2, 5])
def test_each_device_gets_its_own_five_sockets_and_a_sixth_is_refused_on_that_one_only(
        sockets_proxy: Proxy, devices: int):
    proxy = sockets_proxy
    phones = PHONES[:devices]
    with ExitStack() as stack:
        sockets = {phone: [stack.enter_context(open_socket(
                proxy, f"wss://ws.example.com/s{devices}-{i}", phone))
                           for i in range(5)] for phone in phones}
        found = status(proxy)["devices"]
        assert {phone: found[phone]["sockets"] for phone in phones} == dict.fromkeys(phones, 5)
        assert socket_refused(proxy, f"wss://ws.example.com/sixth{devices}", phones[0])
        lines = proxy.wait_for_log(lambda e: e.get("rule") == "socket.exceeded"
                                   and e["url"].endswith(f"sixth{devices}"))
        assert [line["client"] for line in lines] == [phones[0]]
        for phone, opened in sockets.items():  # every other socket is untouched
            for i, ws in enumerate(opened):
                ws.send(f"{phone}-{i}")
                assert ws.recv(timeout=5) == f"{phone}-{i}"
    assert _wait(lambda: all(d["sockets"] == d["running"] == 0
                             for d in status(proxy)["devices"].values()))


def _ctl(proxy: Proxy, *args: str) -> tuple[int, Any]:
    cmd = [sys.executable, "-m", "wxgate.cli", "ctl", "--proxy",
           f"http://127.0.0.1:{proxy.port}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else done.stderr


@pytest.fixture(scope="module")
def background_proxy(session_dir: Path, certs: Certs,
                     resolve_map: dict[str, str]) -> Iterator[Proxy]:
    proxy = start_proxy(session_dir / "devices-background", base_config(resolve_map),
                        certs.ca_file)
    yield proxy
    proxy.stop()


def test_background_by_client_interrupts_that_device_and_spares_the_others(
        background_proxy: Proxy, upstream: Upstream):
    proxy = background_proxy
    home, other = PHONES[0], PHONES[1]
    outcomes: dict[str, tuple[Reply, float]] = {}

    def call(name: str, source: str, ms: int) -> None:
        reply = send_from(proxy, source, f"https://api.example.com/slow?ms={ms}&dev={name}")
        outcomes[name] = (reply, time.time())

    threads = [threading.Thread(target=call, args=args) for args in (
        ("home1", home, 9000), ("home2", home, 9000), ("other", other, 6500))]
    for t in threads:
        t.start()
    assert _wait(lambda: (d := status(proxy)["devices"]).get(home, {}).get("inflight") == 2
                 and d.get(other, {}).get("inflight") == 1)
    code, body = _ctl(proxy, "background", APPID, "--client", home)
    assert code == 0 and (body["client"], body["background"]) == (home, True)
    devices = status(proxy)["devices"]
    t0 = devices[home]["apps"][APPID]["background_since"]
    assert devices[other]["apps"][APPID]["background"] is False

    time.sleep(max(0.0, t0 + 1 - time.time()))
    started = time.monotonic()
    assert send_from(proxy, home, "https://api.example.com/home-new").status is None
    assert time.monotonic() - started < 0.5, "a new call on that device must fail at once"
    assert send_from(proxy, other, "https://api.example.com/other-new").status == 200

    for t in threads:
        t.join(15)
    for name in ("home1", "home2"):
        reply, ended = outcomes[name]
        assert reply.status is None
        assert ended - t0 == pytest.approx(5.0, abs=0.3)
    assert outcomes["other"][0].status == 200
    interrupted = proxy.wait_for_log(lambda e: e.get("rule") == "background.interrupted")
    blocked = proxy.wait_for_log(lambda e: e.get("rule") == "background.blocked")
    assert [e["client"] for e in interrupted] == [home, home]
    assert [e["client"] for e in blocked] == [home]

    code, body = _ctl(proxy, "foreground", APPID, "--client", home)
    assert code == 0 and body["background"] is False
    assert send_from(proxy, home, "https://api.example.com/home-back").status == 200


def test_background_without_client_takes_every_device_of_the_app(background_proxy: Proxy):
    proxy = background_proxy
    assert _ctl(proxy, "background", APPID)[0] == 0
    try:
        replies = {p: send_from(proxy, p, f"https://api.example.com/all-{p}").status
                   for p in PHONES[:3]}
        assert replies == dict.fromkeys(PHONES[:3])  # every one failed (None)
        code, body = _ctl(proxy, "foreground", APPID, "--client", PHONES[0])
        assert code == 0 and body["background"] is False
        assert send_from(proxy, PHONES[0], "https://api.example.com/one-back").status == 200
        assert send_from(proxy, PHONES[1], "https://api.example.com/still").status is None
    finally:
        assert _ctl(proxy, "foreground", APPID)[0] == 0
    assert {p: send_from(proxy, p, f"https://api.example.com/back-{p}").status
            for p in PHONES[:3]} == dict.fromkeys(PHONES[:3], 200)


def test_scheduled_background_window_for_one_device(
        session_dir: Path, certs: Certs, resolve_map: dict[str, str]):
    config = base_config(resolve_map, faults=[
        {"background": {"appid": APPID, "after_s": 1, "for_s": 2, "client": PHONES[0]}}])
    proxy = start_proxy(session_dir / "devices-window", config, certs.ca_file)
    try:
        t0 = time.monotonic()
        time.sleep(max(0.0, t0 + 1.5 - time.monotonic()))
        assert send_from(proxy, PHONES[0], "https://api.example.com/w-home").status is None
        assert send_from(proxy, PHONES[1], "https://api.example.com/w-other").status == 200
        time.sleep(max(0.0, t0 + 3.6 - time.monotonic()))
        assert send_from(proxy, PHONES[0], "https://api.example.com/w-after").status == 200
        assert [(e["event"], e["client"]) for e in proxy.log()
                if e.get("event", "").startswith("app_")] == [
            ("app_background", PHONES[0]), ("app_foreground", PHONES[0])]
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def forgetting(session_dir: Path, certs: Certs, resolve_map: dict[str, str],
               ) -> Iterator[Proxy]:
    proxy = start_proxy(session_dir / "devices-forget", base_config(resolve_map),
                        certs.ca_file, ["--set", "wxgate_device_idle_ms=3000"])
    yield proxy
    proxy.stop()


def _metrics(proxy: Proxy) -> str:
    reply = send(proxy, "http://wxgate.local/metrics")
    assert reply.status == 200
    return reply.body.decode()


def test_many_short_lived_devices_are_forgotten_after_the_idle_time(forgetting: Proxy):
    proxy = forgetting
    phones = [f"127.0.0.{i}" for i in range(10, 50)]
    replies = burst_from(proxy, [(p, f"https://api.example.com/short-{p}") for p in phones])
    assert [r.status for r in replies] == [200] * len(phones)
    done = time.monotonic()
    found = status(proxy)
    assert sorted(found["devices"]) == sorted(phones)
    assert {d["calls"] for d in found["devices"].values()} == {1}
    assert {d["idle_s"] is not None for d in found["devices"].values()} == {True}
    clients = set(re.findall(r'wxgate_device_calls_total\{client="([^"]+)"\}', _metrics(proxy)))
    assert clients == set(phones)

    assert _wait(lambda: status(proxy)["devices"] == {}, timeout=10)
    assert time.monotonic() - done >= 2.5  # not before the idle time (3 s, less a margin)
    assert status(proxy)["devices_forgotten"] == len(phones)
    text = _metrics(proxy)
    assert "client=" not in text
    assert "wxgate_devices 0.0" in text
    assert f"wxgate_devices_forgotten_total {len(phones)}.0" in text
    forgotten = proxy.wait_for_log(lambda e: e.get("event") == "device_forgotten")
    assert sorted(e["client"] for e in forgotten) == sorted(phones)


def test_status_and_metrics_say_which_device_hit_which_rule(forgetting: Proxy):
    """Needs verdict.record to count through Runtime.count_violation (see the closing note)."""
    proxy = forgetting
    phone, other = PHONES[0], PHONES[1]
    for _ in range(2):
        assert send_from(proxy, phone, "https://evil.example.net/x").status is None
    assert send_from(proxy, other, "https://api.example.com/fine").status == 200
    devices = status(proxy)["devices"]
    assert devices[phone]["violations"] == {"domain.not_listed": 2}
    assert devices[other]["violations"] == {}
    assert (f'wxgate_device_violations_total{{action="blocked",client="{phone}",'
            f'rule="domain.not_listed",severity="error"}} 2.0') in _metrics(proxy)
