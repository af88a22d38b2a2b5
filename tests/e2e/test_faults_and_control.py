"""Timeouts, background interruption, seeded faults and the control API, through the
real proxy with a local upstream that notices when its connection is closed."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import (
    APPID,
    MP_HEADERS,
    Certs,
    Proxy,
    Reply,
    Upstream,
    base_config,
    send,
    start_proxy,
    status,
)

pytestmark = pytest.mark.e2e


def _timed(proxy: Proxy, url: str, method: str = "GET", body: bytes | None = None,
           headers: dict[str, str] | None = None) -> tuple[Reply, float]:
    """Seconds from sending the request (tunnel and TLS already up) to its outcome."""
    host, _, rest = url.removeprefix("https://").partition("/")
    ctx = ssl.create_default_context(cafile=str(proxy.ca_file))
    conn = http.client.HTTPSConnection("127.0.0.1", proxy.port, timeout=15, context=ctx)
    conn.set_tunnel(host, 443)
    conn.connect()
    start = time.monotonic()
    try:
        conn.request(method, "/" + rest, body=body, headers={**MP_HEADERS, **(headers or {})})
        resp = conn.getresponse()
        reply = Reply(resp.status, resp.read())
    except (OSError, http.client.HTTPException) as exc:
        reply = Reply(None, error=repr(exc))
    finally:
        conn.close()
    return reply, time.monotonic() - start


@pytest.fixture(scope="module")
def timeouts(session_dir: Path, certs: Certs, resolve_map: dict[str, str]) -> Iterator[Proxy]:
    config = base_config(resolve_map)
    config["apps"][0]["network_timeout"] = {"request": 1000, "uploadFile": 1500}
    proxy = start_proxy(session_dir / "timeouts", config, certs.ca_file)
    yield proxy
    proxy.stop()


@pytest.mark.parametrize(
    ("url", "method", "headers", "limit_ms", "api"),
    [
        ("https://api.example.com/slow?ms=3000&t=req", "GET", {}, 1000, "request"),
        ("https://upload.example.com/slow?ms=3000&t=up", "POST",
         {"Content-Type": "multipart/form-data; boundary=b"}, 1500, "uploadFile"),
    ],
    ids=["request-1000", "uploadFile-1500"],
)
def test_timeout_fails_the_call_at_the_apps_network_timeout(
    timeouts: Proxy, upstream: Upstream, url: str, method: str, headers: dict[str, str],
    limit_ms: int, api: str,
):
    body = b"--b\r\nContent-Disposition: form-data; name=f\r\n\r\nx\r\n--b--\r\n" if (
        method == "POST") else None
    reply, elapsed = _timed(timeouts, url, method, body, headers)
    assert reply.status is None, "the client must see a network failure, not a response"
    assert elapsed == pytest.approx(limit_ms / 1000, abs=0.1)
    path = url.split("example.com")[1]
    deadline = time.monotonic() + 2
    while not any(p == path for p, _ in upstream.closed_early) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert any(p == path for p, _ in upstream.closed_early), "upstream connection not closed"
    lines = timeouts.wait_for_log(lambda e: e.get("rule") == "timeout.exceeded"
                                  and e["url"].endswith(path))
    assert len(lines) == 1
    line = lines[0]
    assert (line["api"], line["limit_ms"], line["action"]) == (api, limit_ms, "blocked")
    assert line["errMsg"] == f"{api}:fail timeout" and line["errno"] is None
    assert line["elapsed_ms"] == pytest.approx(limit_ms, abs=100)


def _ctl(proxy: Proxy, *args: str, token: str | None = None) -> tuple[int, Any]:
    cmd = [sys.executable, "-m", "wxgate.cli", "ctl", "--proxy",
           f"http://127.0.0.1:{proxy.port}", *(["--token", token] if token else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else done.stderr


@pytest.fixture(scope="module")
def background_proxy(session_dir: Path, certs: Certs,
                     resolve_map: dict[str, str]) -> Iterator[Proxy]:
    proxy = start_proxy(session_dir / "background", base_config(resolve_map), certs.ca_file)
    yield proxy
    proxy.stop()


def test_background_interrupts_running_calls_after_grace_and_blocks_new_ones(
    background_proxy: Proxy, upstream: Upstream,
):
    proxy = background_proxy
    outcomes: dict[str, tuple[Reply, float]] = {}

    def slow(tag: str) -> None:
        reply = send(proxy, f"https://api.example.com/slow?ms=9000&bg={tag}", MP_HEADERS,
                     timeout=15)
        outcomes[tag] = (reply, time.time())

    threads = [threading.Thread(target=slow, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while status(proxy)["apps"][APPID]["inflight"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    code, body = _ctl(proxy, "background", APPID)
    assert code == 0 and body["background"] is True
    # When the proxy took the app to background (wall clock, as the outcomes are).
    t0 = status(proxy)["apps"][APPID]["background_since"]

    time.sleep(max(0.0, t0 + 1 - time.time()))
    new, took = _timed(proxy, "https://api.example.com/during-background")
    assert new.status is None and took < 0.3, "a new call must fail at once"

    for t in threads:
        t.join(15)
    for tag in ("a", "b"):
        reply, ended = outcomes[tag]
        assert reply.status is None
        assert ended - t0 == pytest.approx(5.0, abs=0.2)
    interrupted = proxy.wait_for_log(lambda e: e.get("rule") == "background.interrupted")
    blocked = proxy.wait_for_log(lambda e: e.get("rule") == "background.blocked")
    assert len(interrupted) == 2 and len(blocked) == 1
    assert {e["errMsg"] for e in interrupted + blocked} == {"request:fail interrupted"}
    assert {e["errno"] for e in interrupted + blocked} == {600003}

    code, body = _ctl(proxy, "foreground", APPID)
    assert code == 0 and body["background"] is False
    assert send(proxy, "https://api.example.com/after-foreground", MP_HEADERS).status == 200


def _drops(session_dir: Path, name: str, certs: Certs, resolve: dict[str, str]) -> set[int]:
    config = base_config(resolve, seed=7, faults=[{"match": {"api": "request"}, "drop": 0.3}])
    proxy = start_proxy(session_dir / name, config, certs.ca_file)
    try:
        return {i for i in range(200)
                if send(proxy, f"https://api.example.com/item/{i}", MP_HEADERS).status is None}
    finally:
        proxy.stop()


def test_same_seed_and_traffic_drop_the_same_calls(
    session_dir: Path, certs: Certs, resolve_map: dict[str, str],
):
    first = _drops(session_dir, "seed-1", certs, resolve_map)
    second = _drops(session_dir, "seed-2", certs, resolve_map)
    assert first == second
    assert 30 <= len(first) <= 90  # about 30 % of 200


def _from_127_0_0_2(proxy: Proxy, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10,
                                    source_address=("127.0.0.2", 0))
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.sock = sock
    conn.request("GET", "http://wxgate.local/status", headers=headers)
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


@pytest.fixture(scope="module")
def token_proxy(session_dir: Path, certs: Certs,
                resolve_map: dict[str, str]) -> Iterator[tuple[Proxy, int]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        control_port = probe.getsockname()[1]
    config = base_config(resolve_map, control={"token": "s3cret"})
    proxy = start_proxy(session_dir / "token", config, certs.ca_file,
                        ["--set", f"wxgate_control_port={control_port}"])
    yield proxy, control_port
    proxy.stop()


def test_control_api_refuses_a_non_loopback_caller_without_the_token(
    token_proxy: tuple[Proxy, int],
):
    proxy, _ = token_proxy
    code, body = _from_127_0_0_2(proxy, {})
    assert code == 401 and "Bearer" in body["error"]
    assert proxy.wait_for_log(lambda e: e.get("event") == "control_refused"
                              and e.get("client") == "127.0.0.2")
    code, body = _from_127_0_0_2(proxy, {"Authorization": "Bearer s3cret"})
    assert code == 200 and APPID in body["apps"]


def test_control_port_and_ctl_manage_faults_at_run_time(
    token_proxy: tuple[Proxy, int], upstream: Upstream,
):
    proxy, control_port = token_proxy
    control = f"http://127.0.0.1:{control_port}"
    base = [sys.executable, "-m", "wxgate.cli", "ctl", "--control", control]
    fault = json.dumps({"match": {"url": "*/teapot*"}, "status": 418})
    added = subprocess.run([*base, "faults", "add", fault], capture_output=True, text=True,
                           timeout=30)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["ids"] == [1]
    assert send(proxy, "https://api.example.com/teapot", MP_HEADERS).status == 418
    bad = subprocess.run([*base, "faults", "add", '{"drop": 2}'], capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 1 and "drop" in bad.stdout
    cleared = subprocess.run([*base, "faults", "clear"], capture_output=True, text=True,
                             timeout=30)
    assert json.loads(cleared.stdout) == {"removed": 1}
    assert send(proxy, "https://api.example.com/teapot", MP_HEADERS).status == 200
    send(proxy, "https://evil.example.net/for-violations", MP_HEADERS)
    listed = subprocess.run([*base, "violations", "--since", "0"], capture_output=True,
                            text=True, timeout=30)
    found = json.loads(listed.stdout)["violations"]
    assert [v["rule"] for v in found if v["url"].endswith("/for-violations")] == [
        "domain.not_listed"]
    metrics = urllib.request.urlopen(f"{control}/metrics", timeout=10)
    assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = metrics.read().decode()
    assert ('wxgate_violations_total{action="blocked",rule="domain.not_listed",'
            'severity="error"} 1.0') in text
    assert f'wxgate_app_background{{appid="{APPID}"}} 0.0' in text
    assert "wxgate_flows_total" in text and "wxgate_blocked_total 1.0" in text


@pytest.fixture(scope="module")
def answering_fail(session_dir: Path, certs: Certs,
                   resolve_map: dict[str, str]) -> Iterator[Proxy]:
    config = base_config(resolve_map, block_with="response",
                         limits={"concurrency": 1, "over_concurrency": "fail"})
    proxy = start_proxy(session_dir / "answering-fail", config, certs.ca_file)
    yield proxy
    proxy.stop()


def test_block_with_response_bodies_carry_the_clients_errmsg_and_errno(
    answering_fail: Proxy, upstream: Upstream,
):
    proxy = answering_fail
    domain = send(proxy, "https://evil.example.net/x", MP_HEADERS)
    holder = threading.Thread(target=send, args=(
        proxy, "https://api.example.com/slow?ms=1500&hold=1", MP_HEADERS))
    holder.start()
    deadline = time.monotonic() + 5
    while status(proxy)["apps"][APPID]["inflight"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    over = send(proxy, "https://api.example.com/second", MP_HEADERS)
    holder.join(10)
    assert _ctl(proxy, "background", APPID)[0] == 0
    background = send(proxy, "https://api.example.com/in-background", MP_HEADERS)
    assert _ctl(proxy, "foreground", APPID)[0] == 0
    bodies = {name: (r.status, json.loads(r.body)) for name, r in
              (("domain", domain), ("concurrency", over), ("background", background))}
    assert {name: (code, b["rule"], b["errMsg"], b["errno"])
            for name, (code, b) in bodies.items()} == {
        "domain": (403, "domain.not_listed", "request:fail url not in domain list", 600002),
        "concurrency": (403, "concurrency.exceeded", "request:fail exceed max task count",
                        600007),
        "background": (403, "background.blocked", "request:fail interrupted", 600003),
    }


def test_scheduled_background_window_from_the_config(
    session_dir: Path, certs: Certs, resolve_map: dict[str, str],
):
    """`faults: - background: {appid, after_s: 1, for_s: 2}`: calls fail at once inside the
    window, and pass before and after it."""
    config = base_config(resolve_map, faults=[
        {"background": {"appid": APPID, "after_s": 1, "for_s": 2}}])
    proxy = start_proxy(session_dir / "window", config, certs.ca_file)
    try:
        # The window is scheduled when the proxy starts running, just before its banner.
        t0 = time.monotonic()
        assert send(proxy, "https://api.example.com/w-before", MP_HEADERS).status == 200
        time.sleep(max(0.0, t0 + 1.5 - time.monotonic()))
        assert send(proxy, "https://api.example.com/w-inside", MP_HEADERS).status is None
        time.sleep(max(0.0, t0 + 3.6 - time.monotonic()))
        assert send(proxy, "https://api.example.com/w-after", MP_HEADERS).status == 200
        assert [e["by"] for e in proxy.log() if e.get("event", "").startswith("app_")] == [
            "scheduled", "scheduled"]
        assert [v["rule"] for v in proxy.violations() if "/w-" in v["url"]] == [
            "background.blocked"]
    finally:
        proxy.stop()
