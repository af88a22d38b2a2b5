"""wxgate's guarantees under hostile input, load, faults and shutdown.

- no spelling of an IP address or a loopback name is ever accepted as a listed domain;
- a long soak with client aborts and upstream resets leaks no slot, keeps memory flat and
  logs each violation exactly once;
- SIGTERM in the middle of load loses no log line of a call the client saw blocked;
- a reload with a broken config keeps the running policy and says why.

Fail closed (an exception inside any enforcing hook blocks the call) is tests/test_verdict.py.

The load tests use tests/e2e/load.py (asyncio upstream and keep-alive clients), so that
20,000 calls fit in the time of a test on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import secrets
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy import version as mversion
from wxgate.policy.config import AppConfig, DomainEntry
from wxgate.policy.hosts import HostKind, classify_host, is_lan_ip
from wxgate.policy.urls import Target, judge_target

from ..addon_helpers import APPID as UNIT_APPID
from ..policy.test_hosts import _disguise, _ipv4_spelling, _ipv6_spelling, _random_case
from .harness import APPID, MP_HEADERS, Certs, Proxy, base_config, start_proxy, status
from .load import Closed, FastUpstream, Tunnel, client_context, proc_status

pytestmark = pytest.mark.e2e

APPID2 = "wxfedcba9876543210"
UA = MP_HEADERS["User-Agent"]


def _mp(appid: str) -> dict[str, str]:
    return {"Referer": f"https://servicewechat.com/{appid}/0/page-frame.html", "User-Agent": UA}


# --------------------------------------------------------------------------- (a) host fuzz

# The /etc/hosts loopback names of the common distributions, and *.localhost.
_LOOPBACK = ["localhost", "localhost.localdomain", "localhost4", "localhost4.localdomain4",
             "localhost6", "localhost6.localdomain6", "ip6-localhost", "ip6-loopback"]
_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,12}[a-z0-9])?", fullmatch=True)
# Characters IDNA nameprep deletes: they vanish before the name reaches the resolver.
_INVISIBLE = ["\u00ad", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]


@st.composite
def _loopback_spelling(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        name = draw(st.sampled_from(_LOOPBACK))
    else:
        labels = draw(st.lists(_LABEL, min_size=1, max_size=3))
        name = ".".join([*labels, "localhost"])
    name = draw(_random_case(name))
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(0, len(name)))
        name = name[:at] + draw(st.sampled_from(_INVISIBLE)) + name[at:]
    if draw(st.booleans()):
        name += "."
    return name


@st.composite
def _hostile_host(draw: st.DrawFn) -> tuple[str, str]:
    """(spelling, the rule it must get): any IP or loopback spelling, maybe disguised."""
    kind = draw(st.sampled_from(["ipv4", "ipv6", "loopback"]))
    if kind == "loopback":
        text, rule = draw(_loopback_spelling()), "domain.localhost"
    else:
        text = draw(_ipv4_spelling() if kind == "ipv4" else _ipv6_spelling())[0]
        rule = "domain.ip_address"
    if draw(st.booleans()):
        text = draw(_disguise(text))
    return text, rule


def _listing(host: str) -> AppConfig:
    """The worst case: the whitelist holds exactly the name the host normalises to (the
    console refuses such entries; a config built by hand could still hold one)."""
    name = classify_host(host).name
    entries = (DomainEntry("https", name, None, f"https://{name}"),
               DomainEntry("https", "api.example.com", None, "https://api.example.com"))
    return AppConfig(UNIT_APPID, domains={"request": entries, "uploadFile": (),
                                          "downloadFile": (), "connectSocket": ()})


@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(_hostile_host(), st.sampled_from([None, 443, 8443]))
def test_no_ip_or_loopback_spelling_is_accepted_as_a_listed_domain(
    case: tuple[str, str], port: int | None,
) -> None:
    """10,000 spellings (dotted, short, decimal, hex, octal, IPv6, mapped, loopback names,
    full-width, ideographic dots, percent-escapes, invisible characters, case, trailing
    dots): judge_target refuses every one with the IP or loopback rule, even when the
    whitelist holds the very name it normalises to; with allow_lan_ip only a LAN address
    may pass, never a loopback one."""
    host, rule = case
    app = _listing(host)
    target = Target("https", host, port or 443, port)
    verdict = judge_target(target, "request", app)
    assert verdict is not None, f"{host!r} was accepted as a listed domain"
    if rule == "domain.localhost" and classify_host(host).kind is HostKind.IP:
        rule = "domain.ip_address"  # e.g. "localhost.0x1": ends in a number, so an IP
    assert verdict.rule == rule, (host, verdict)
    lan = judge_target(target, "request", app, allow_lan_ip=True)
    if lan is None:
        info = classify_host(host)
        assert info.kind is HostKind.IP and info.ip is not None and is_lan_ip(info.ip), host


# --------------------------------------------------------------------------- shared set-up


@pytest.fixture(scope="module")
def fast(certs: Certs) -> Iterator[FastUpstream]:
    """An upstream that keeps up with the proxy; /flaky dies mid-response half the time."""
    upstream = FastUpstream(certs.server_context, reset_share=0.5, seed=7).start_in_thread()
    yield upstream
    upstream.close()


def _fast_resolve(fast: FastUpstream) -> dict[str, str]:
    target = f"127.0.0.1:{fast.https_port}"
    return {name: target for name in ("api.example.com", "cdn.example.com", "evil.example.net")}


def _two_apps(fast: FastUpstream, **overrides: Any) -> dict[str, Any]:
    config = base_config(_fast_resolve(fast), **overrides)
    config["apps"] = [config["apps"][0], dict(config["apps"][0], appid=APPID2)]
    return config


def _tag_of(url: str) -> str:
    return url.rsplit("tag=", 1)[1] if "tag=" in url else ""


def _lines_by_tag(proxy: Proxy) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in proxy.violations():
        found[_tag_of(str(line.get("url", "")))].append(line)
    return found


# --------------------------------------------------------------------------- (b) soak


class Soak:
    """`total` calls from `concurrency` keep-alive clients of two apps, seeded:
    94 % plain calls, 2 % /flaky (the upstream resets half of them mid-response),
    2 % aborted by the client at a random moment, 2 % to an unlisted host (violations).

    Every abort, reset and violation costs a fresh CONNECT and two TLS handshakes (the
    proxy closes the connection, as the phone sees it): at 2 % each the soak still has
    hundreds of each, and 20,000 calls stay within a test's time on 2 cores."""

    KINDS = ("ok", "flaky", "abort", "violate")
    WEIGHTS = (94, 2, 2, 2)

    def __init__(self, proxy: Proxy, seed: int) -> None:
        self.proxy = proxy
        self.seed = seed
        self.tls = client_context(proxy.ca_file)
        self.kinds: dict[str, str] = {}
        self.ok_failures: list[str] = []
        self.outcomes: Counter[str] = Counter()
        self.next = 0

    async def run(self, prefix: str, total: int, concurrency: int) -> None:
        self.next = 0

        async def worker(k: int) -> None:
            rng = random.Random(f"{self.seed}-{prefix}-{k}")
            headers = _mp(APPID if k % 2 else APPID2)
            tunnel: Tunnel | None = None
            while self.next < total:
                i, self.next = self.next, self.next + 1
                tag = f"{prefix}{i}"
                kind = rng.choices(self.KINDS, self.WEIGHTS)[0]
                self.kinds[tag] = kind
                if kind == "violate":
                    await self.violate(tag, headers)
                    continue
                if tunnel is None:
                    tunnel = await Tunnel.open(self.proxy.port, "api.example.com:443",
                                               tls=self.tls)
                if kind == "abort":
                    tunnel.send(f"/slow?ms={rng.choice([5, 20, 50, 200])}&tag={tag}", headers)
                    # The moment the client gives up: before, during or after the answer.
                    await asyncio.sleep(rng.random() * 0.08)
                    tunnel.abort()
                    tunnel = None
                    self.outcomes["aborted"] += 1
                    continue
                path = "/flaky" if kind == "flaky" else "/ok"
                try:
                    reply = await tunnel.request(f"{path}?tag={tag}", headers, timeout=30)
                    self.outcomes[f"{kind} {reply.status}"] += 1
                    if kind == "ok" and reply.status != 200:
                        self.ok_failures.append(f"{tag}: {reply.status}")
                except (Closed, TimeoutError, OSError) as exc:
                    self.outcomes[f"{kind} closed"] += 1
                    if kind == "ok":
                        self.ok_failures.append(f"{tag}: {exc}")
                if kind == "flaky":
                    # Whatever the proxy did with that connection, start clean: a failure
                    # of the next call must not be blamed on the reset.
                    tunnel.abort()
                    tunnel = None
            if tunnel is not None:
                tunnel.abort()

        await asyncio.gather(*(worker(k) for k in range(concurrency)))

    async def violate(self, tag: str, headers: dict[str, str]) -> None:
        tunnel = await Tunnel.open(self.proxy.port, "evil.example.net:443", tls=self.tls)
        try:
            reply = await tunnel.request(f"/steal?tag={tag}", headers, timeout=30)
            self.outcomes[f"violate {reply.status}"] += 1
        except (Closed, TimeoutError, OSError):
            self.outcomes["violate closed"] += 1  # block_with: fail, as the phone sees it
        finally:
            tunnel.abort()


def _wait_idle(proxy: Proxy, timeout: float = 20.0) -> dict[str, Any]:
    """/status once every app has nothing in flight (or the last one seen at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        apps: dict[str, Any] = status(proxy)["apps"]
        idle = all(a["inflight"] == 0 and a["sockets"] == 0 for a in apps.values())
        if idle or time.monotonic() > deadline:
            return apps
        time.sleep(0.1)


def test_soak_of_20k_calls_with_aborts_and_resets_leaks_nothing(
    session_dir: Path, certs: Certs, fast: FastUpstream,
) -> None:
    """20,000 calls at concurrency 50 (after 1,000 to warm up), with random client aborts
    and upstream resets: afterwards no app has a call in flight, the proxy's RSS grew by
    less than 50 MB, no plain call failed, and each call to an unlisted host has exactly
    one violation line (queued calls at most one concurrency.exceeded line, nothing else)."""
    # 25 clients per app against a limit of 20: calls queue now and then (and are
    # aborted while queued), without every call paying for a `queued` line.
    config = _two_apps(fast, limits={"concurrency": 20})
    proxy = start_proxy(session_dir / "soak", config, certs.ca_file)
    try:
        soak = Soak(proxy, seed=20_000)
        asyncio.run(soak.run("w", 1_000, 50))
        rss_before = proc_status(proxy.proc.pid)["VmRSS"]
        began = time.monotonic()
        asyncio.run(soak.run("s", 20_000, 50))
        wall = time.monotonic() - began
        apps = _wait_idle(proxy)
        rss_after = proc_status(proxy.proc.pid)["VmRSS"]
        print(f"soak: 20,000 calls in {wall:.1f} s ({20_000 / wall:.0f}/s); RSS "
              f"{rss_before // 1024} -> {rss_after // 1024} MB; upstream resets "
              f"{fast.stats.resets}; outcomes {dict(soak.outcomes)}")
        assert {appid: (a["inflight"], a["sockets"]) for appid, a in apps.items()} == {
            APPID: (0, 0), APPID2: (0, 0)}
        assert (rss_after - rss_before) / 1024 < 50, (rss_before, rss_after)
        assert soak.ok_failures == []
        assert fast.stats.resets > 0 and soak.outcomes["aborted"] > 0
        by_tag = _lines_by_tag(proxy)
        for tag, kind in soak.kinds.items():
            rules = [(e["rule"], e["action"]) for e in by_tag.get(tag, [])]
            if kind == "violate":
                assert rules == [("domain.not_listed", "blocked")], (tag, rules)
            else:
                assert rules in ([], [("concurrency.exceeded", "queued")]), (tag, rules)
        assert set(by_tag) <= set(soak.kinds), set(by_tag) - set(soak.kinds)
    finally:
        proxy.stop()


# --------------------------------------------------------------------------- (c) SIGTERM


def test_sigterm_mid_load_loses_no_decided_line(
    session_dir: Path, certs: Certs, fast: FastUpstream,
) -> None:
    """SIGTERM while 20 clients keep calling: the proxy exits 0, its last line is
    `shutdown`, and every call the client saw blocked (a 403 with X-Wxgate-Rule) has its
    violation line, exactly once."""
    config = base_config(_fast_resolve(fast), block_with="response")
    proxy = start_proxy(session_dir / "sigterm-load", config, certs.ca_file)
    tls = client_context(proxy.ca_file)
    blocked: list[str] = []
    sent_at: list[float] = []

    async def worker(k: int) -> None:
        rng = random.Random(k)
        tunnels: dict[str, Tunnel] = {}
        i = 0
        while True:
            host = "evil.example.net" if rng.random() < 0.4 else "api.example.com"
            tag = f"k{k}-{i}"
            i += 1
            try:
                if host not in tunnels:
                    tunnels[host] = await Tunnel.open(proxy.port, f"{host}:443", tls=tls)
                reply = await tunnels[host].request(f"/x?tag={tag}", _mp(APPID), timeout=10)
            except (Closed, TimeoutError, OSError):
                if sent_at:
                    break  # the proxy is going away: this client is done
                tunnels.pop(host).abort()
                continue
            if reply.status == 403 and "x-wxgate-rule" in reply.headers:
                blocked.append(tag)
            if len(blocked) >= 300 and not sent_at:
                # Mid-load: the other 19 clients have calls on the wire right now.
                proxy.proc.send_signal(signal.SIGTERM)
                sent_at.append(time.monotonic())
        for tunnel in tunnels.values():
            tunnel.abort()

    async def load() -> None:
        await asyncio.wait_for(asyncio.gather(*(worker(k) for k in range(20))), 60)

    try:
        asyncio.run(load())
        assert proxy.proc.wait(30) == 0
    finally:
        proxy.stop()
    log = proxy.log()
    assert log[-1]["event"] == "shutdown"
    by_tag = _lines_by_tag(proxy)
    missing = [t for t in blocked if [(e["rule"], e["action"]) for e in by_tag.get(t, [])]
               != [("domain.not_listed", "blocked")]]
    assert sent_at and len(blocked) >= 300
    assert missing == [], f"{len(missing)} of {len(blocked)} blocked calls: {missing[:5]}"


# --------------------------------------------------------------------------- (d) reload


class MitmWeb:
    """mitmweb's REST API, the one way to change an option of a running wxgate from
    outside (there is no signal or control-API reload): PUT /options.

    Tornado's XSRF check is a double submit: the same token in a cookie and in the
    X-XSRFToken header (the cookie is `_xsrf` on mitmproxy 11, `_mitmproxy_xsrf` on 12).
    On 12 the API also wants the web password, sent as a bearer token."""

    def __init__(self, port: int, password: str) -> None:
        self.port = port
        self.password = password
        self.xsrf = secrets.token_hex(16)

    def set_option(self, **options: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("PUT", "/options", body=json.dumps(options).encode(), headers={
            "Content-Type": "application/json",
            "Cookie": f"_xsrf={self.xsrf}; _mitmproxy_xsrf={self.xsrf}",
            "X-XSRFToken": self.xsrf,
            "Authorization": f"Bearer {self.password}",
        })
        resp = conn.getresponse()
        data = resp.read().decode("utf-8", "replace")
        conn.close()
        return resp.status, data


def _version_tuple() -> tuple[int, ...]:
    return tuple(int(p) for p in mversion.VERSION.split(".")[:2])


def _reply(proxy: Proxy, host: str) -> tuple[int | None, str]:
    async def one() -> tuple[int | None, str]:
        tunnel = await Tunnel.open(proxy.port, f"{host}:443", tls=client_context(proxy.ca_file))
        try:
            reply = await tunnel.request("/r", _mp(APPID), timeout=10)
            return reply.status, reply.headers.get("x-wxgate-rule", "")
        except Closed:
            return None, ""
        finally:
            tunnel.abort()

    return asyncio.run(one())


def test_reload_with_an_error_keeps_the_running_policy_and_says_why(
    session_dir: Path, certs: Certs, fast: FastUpstream,
) -> None:
    """Through a real `wxgate run --web`: the config file is rewritten and reloaded via
    mitmweb's options API. A good file takes effect; a broken one (which would also have
    listed the blocked host) is refused with the reason, logged as config_rejected, and
    the running policy goes on: the blocked host stays blocked, the allowed one allowed."""
    web_port = _free_port()
    password = "reload-test-secret"
    extra = ["--web", "--set", f"web_port={web_port}", "--set", "web_host=127.0.0.1",
             "--set", "web_open_browser=false"]
    if _version_tuple() >= (11, 1):
        extra += ["--set", f"web_password={password}"]
    config = base_config(_fast_resolve(fast), block_with="response")
    workdir = session_dir / "reload"
    proxy = start_proxy(workdir, config, certs.ca_file, extra=extra)
    cfg_file = workdir / "wxgate.yaml"
    web = MitmWeb(web_port, password)
    try:
        assert _reply(proxy, "evil.example.net") == (403, "domain.not_listed")

        # A good reload takes effect: the route really reloads the file.
        listed = yaml.safe_load(cfg_file.read_text())
        listed["apps"][0]["domains"]["request"].append("https://cdn.example.com")
        cfg_file.write_text(yaml.safe_dump(listed, sort_keys=False))
        assert web.set_option(wxgate_config=str(cfg_file))[0] == 200
        assert _reply(proxy, "cdn.example.com") == (200, "")

        # A broken one, which would also list evil.example.net, is refused whole.
        broken = yaml.safe_load(cfg_file.read_text())
        broken["apps"][0]["domains"]["request"].append("https://evil.example.net")
        broken["limits"] = {"concurency": 3}
        cfg_file.write_text(yaml.safe_dump(broken, sort_keys=False))
        code, answer = web.set_option(wxgate_config=str(cfg_file))
        assert code == 400
        assert "concurency" in answer and "did you mean 'concurrency'" in answer
        rejected = proxy.wait_for_log(lambda e: e.get("event") == "config_rejected")
        assert rejected and any("concurency" in p for p in rejected[-1]["problems"])
        assert _reply(proxy, "evil.example.net") == (403, "domain.not_listed")
        assert _reply(proxy, "cdn.example.com") == (200, "")
        assert _reply(proxy, "api.example.com") == (200, "")
    finally:
        proxy.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
