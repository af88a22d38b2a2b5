"""Resource bounds under hostile input (SPEC §8), wxgate against bare mitmdump (not run by CI).

    python bench/hostile_resources.py [--parts log,upload,idle,ws] [--upload-mib 64]
                                      [--uploads 3] [--idle-silent 300] [--idle-half 50]
                                      [--idle-connect 50] [--idle-wait 40]
                                      [--ws-frames 20000] [--ws-frame-kib 8] [--no-bare]
                                      [--json FILE] [--keep]

Drives real proxies as subprocesses: `wxgate run` (the CLI of this environment) and bare
`mitmdump --set connection_strategy=lazy` (wxgate forces lazy), both `-q` on 127.0.0.1,
the same mitmproxy, a local TLS upstream (tests/e2e/harness.py). Memory is read from
/proc/PID/status of the proxy process: VmRSS, and VmHWM after a reset of the peak
(`echo 5 > /proc/PID/clear_refs`) once the proxy is warmed up, so the peak is that of the
measurement alone. Four parts, each bounded in time:

  log     bench/hostile_log.py for a 1 MB Referer, URL and User-Agent (150 calls each):
          violation-log growth per call, proxy RSS.
  upload  a mini-program multipart POST with Content-Length 64 MiB through CONNECT + TLS
          from 127.0.0.2: blocked (unlisted host) under `block_with: fail` and `response`,
          allowed (listed uploadFile host), and allowed through bare mitmdump. Fresh proxy
          per case; peak and growth of RSS, what the client saw, the bytes it got to send
          (a send with no progress for --upload-stall s counts as stalled), whether the
          proxy closed the connection (the client socket's TCP state), and the proxy's
          descriptors 1 s after the client closed.
  idle    connections from 127.0.0.2 that send nothing, half a request head, or a CONNECT
          and then nothing, opened on wxgate (default `wxgate_head_timeout_ms`, 30 s) and on
          bare mitmdump at once: when each is closed (from its connect, or from the CONNECT
          reply), how many are still open after 35 s, the proxy's descriptors, and a normal
          call to wxgate every few seconds meanwhile.
  ws      20,000 binary frames of 8 KiB sent through one wss socket to an echo upstream
          (40,000 messages through the proxy): RSS as they go, with the socket still open.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import selectors
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.harness import (  # noqa: E402 - after the path is set
    MP_HEADERS,
    REFERER,
    Certs,
    Upstream,
    base_config,
    make_certs,
    wxgate_cmd,
)

UA = MP_HEADERS["User-Agent"]
HOSTILE_SRC = "127.0.0.2"  # "another machine" as far as a loopback-only test can go
MIB = 1 << 20
NAMES = ("api.example.com", "upload.example.com", "cdn.example.com", "evil.example.net")


def say(*parts: Any) -> None:
    print(*parts, flush=True)


# --- proxies ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


@dataclass
class Running:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss(self) -> int:
        return proc_status(self.pid)["VmRSS"]

    def hwm(self) -> int:
        return proc_status(self.pid)["VmHWM"]

    def reset_peak(self) -> bool:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Env:
    work: Path
    certs: Certs
    confdir: Path
    upstream: Upstream
    keep_all: list[Running] = field(default_factory=list)

    @property
    def proxy_ca(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    def resolve(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        table = {name: f"127.0.0.1:{self.upstream.port}" for name in NAMES}
        return {**table, **(extra or {})}

    def start(self, name: str, config: dict[str, Any] | None) -> Running:
        """`wxgate run` with `config` (log to a file, console off), or bare mitmdump."""
        port = free_port()
        workdir = self.work / name
        workdir.mkdir(parents=True, exist_ok=True)
        common = ["-q", "-p", str(port), "--listen-host", "127.0.0.1",
                  "--set", f"confdir={self.confdir}",
                  "--set", f"ssl_verify_upstream_trusted_ca={self.certs.ca_file}"]
        if config is not None:
            config = {**config, "log": {"path": str(workdir / "violations.jsonl"),
                                        "console": "off"}}
            cfg = workdir / "wxgate.yaml"
            cfg.write_text(yaml.safe_dump(config, sort_keys=False))
            args = [*wxgate_cmd(), "run", "-c", str(cfg), *common]
        else:
            mitmdump = Path(sys.executable).parent / "mitmdump"
            args = [str(mitmdump), "--set", "connection_strategy=lazy", *common]
        out = (workdir / "proxy.out").open("wb")
        proc = subprocess.Popen(args, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        running = Running(name, proc, port, workdir)
        self.keep_all.append(running)
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: "
                                   + (workdir / "proxy.out").read_text()[-2000:])
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return running
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not listen within 60 s") from None
                time.sleep(0.1)


@contextlib.contextmanager
def environment(keep: bool) -> Iterator[Env]:
    from mitmproxy.certs import CertStore  # the CA, made once for every proxy

    work = Path(tempfile.mkdtemp(prefix="wxgate-hostile-res-"))
    certs = make_certs(work)
    confdir = work / "mitmproxy"
    CertStore.from_store(str(confdir), "mitmproxy", 2048)
    upstream = Upstream(certs.server_context)
    env = Env(work, certs, confdir, upstream)
    try:
        yield env
    finally:
        for running in env.keep_all:
            running.stop()
        upstream.close()
        if keep:
            say(f"work directory: {work}")
        else:
            import shutil
            shutil.rmtree(work, ignore_errors=True)


# --- client side -----------------------------------------------------------------------

def read_head(sock: socket.socket | ssl.SSLSocket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def tunnel(env: Env, port: int, target: str, src: str, timeout: float) -> socket.socket:
    """A TCP connection from `src` to the proxy with a CONNECT answered 200."""
    sock = socket.socket()
    sock.settimeout(timeout)
    sock.bind((src, 0))
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    reply = read_head(sock)
    if not reply.startswith(b"HTTP/1.1 200"):
        sock.close()
        raise OSError(f"CONNECT {target}: {reply[:60]!r}")
    return sock


def tls_to(env: Env, sock: socket.socket, sni: str) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(env.proxy_ca))
    return ctx.wrap_socket(sock, server_hostname=sni)


def normal_call(env: Env, port: int, path: str = "/ok") -> tuple[int | None, float]:
    """An allowed mini-program GET to api.example.com from 127.0.0.1; (status, ms)."""
    started = time.perf_counter()
    try:
        with tls_to(env, tunnel(env, port, "api.example.com:443", "127.0.0.1", 10),
                    "api.example.com") as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: api.example.com\r\nReferer: {REFERER}"
                        f"\r\nUser-Agent: {UA}\r\nConnection: close\r\n\r\n".encode())
            head = read_head(tls)
        code = int(head.split()[1]) if head.startswith(b"HTTP/") else None
    except OSError:
        code = None
    return code, (time.perf_counter() - started) * 1000


# --- part: log ---------------------------------------------------------------------------

def part_log(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for fld in ("referer", "url", "user-agent"):
        say(f"[log] bench/hostile_log.py --field {fld} --calls {args.log_calls}")
        cmd = [sys.executable, str(ROOT / "bench" / "hostile_log.py"), "--field", fld,
               "--calls", str(args.log_calls)]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                                 check=True).stdout
        except (subprocess.SubprocessError, OSError) as exc:
            say(f"  failed: {exc}")
            continue
        for line in out.splitlines():
            say("  " + line.strip())
        rows.append({"field": fld, "output": out})
    return rows


# --- part: upload ------------------------------------------------------------------------

BOUNDARY = "wxgateboundary"


TCP_STATES = {1: "ESTABLISHED", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT", 7: "CLOSE",
              8: "CLOSE_WAIT", 9: "LAST_ACK"}


def proxy_sockets(port: int) -> dict[str, int]:
    """The proxy's accepted TCP sockets on `port` by state (/proc/net/tcp), listener aside."""
    counts: dict[str, int] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], int(fields[3], 16)
        if int(local.split(":")[1], 16) == port and state != 10:  # 10: LISTEN
            name = TCP_STATES.get(state, str(state))
            counts[name] = counts.get(name, 0) + 1
    return counts


def tcp_state(sock: socket.socket) -> str:
    """The kernel's TCP state of a client socket: CLOSE_WAIT means the proxy closed it."""
    try:
        state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    except OSError:
        return "?"
    return TCP_STATES.get(state, str(state))


def upload(env: Env, port: int, host: str, connect_to: str, size: int,
           timeout: float, stall: float) -> dict[str, Any]:
    """One multipart POST of `size` bytes through CONNECT + TLS from 127.0.0.2.

    A send that makes no progress for `stall` seconds counts as stalled (the proxy stopped
    reading); the connection's TCP state then says whether the proxy closed it.
    """
    pre = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
           f"filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    post = f"\r\n--{BOUNDARY}--\r\n".encode()
    head = (f"POST /upload HTTP/1.1\r\nHost: {host}\r\nReferer: {REFERER}\r\n"
            f"User-Agent: {UA}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    chunk = bytes(256 * 1024)
    started = time.monotonic()
    sent = 0
    result: dict[str, Any] = {"size": size, "stalled": False, "error": None}
    try:
        tls = tls_to(env, tunnel(env, port, connect_to, HOSTILE_SRC, 10), host)
    except OSError as exc:
        return {**result, "outcome": f"no tunnel: {exc}", "sent": 0,
                "seconds": time.monotonic() - started, "status": None, "tcp": "?"}
    reply = b""
    with tls:
        tls.settimeout(stall)
        try:
            tls.sendall(head)
            tls.sendall(pre)
            sent = len(pre)
            body_end = size - len(post)
            while sent < body_end:
                if time.monotonic() - started > timeout:
                    raise TimeoutError("upload took too long")
                piece = chunk[: min(len(chunk), body_end - sent)]
                tls.sendall(piece)
                sent += len(piece)
            tls.sendall(post)
            sent += len(post)
        except TimeoutError:
            result["stalled"] = True
        except (OSError, ssl.SSLError) as exc:
            result["error"] = type(exc).__name__
        if not result["stalled"]:
            try:
                reply = read_head(tls)
            except TimeoutError:
                result["stalled"] = True
            except (OSError, ssl.SSLError) as exc:
                result["error"] = result["error"] or type(exc).__name__
        seconds = time.monotonic() - started
        time.sleep(0.2)
        result["tcp"] = tcp_state(tls)
    status = int(reply.split()[1]) if reply.startswith(b"HTTP/") else None
    result.update(sent=sent, status=status, seconds=seconds)
    if status is not None:
        result["outcome"] = f"{status}" + (" then closed" if sent < size else "")
    elif result["stalled"] and result["tcp"] == "ESTABLISHED":
        result["outcome"] = f"stalled, no reply in {stall:.0f} s, connection left open"
    else:
        result["outcome"] = f"closed by proxy ({result['error'] or result['tcp']})"
    return result


def part_upload(env: Env, args: argparse.Namespace) -> list[dict[str, Any]]:
    size = args.upload_mib * MIB
    cases: list[tuple[str, dict[str, Any] | None, str, str]] = [
        ("wxgate, blocked, block_with: fail",
         base_config(env.resolve(), block_with="fail"), "evil.example.net", "evil.example.net:443"),
        ("wxgate, blocked, block_with: response",
         base_config(env.resolve(), block_with="response"), "evil.example.net",
         "evil.example.net:443"),
        ("wxgate, allowed (uploadFile host)",
         base_config(env.resolve()), "upload.example.com", "upload.example.com:443"),
    ]
    if not args.no_bare:
        # Bare mitmdump has no `resolve`: it is asked for the upstream's address, with the
        # name as SNI (the upstream's certificate carries both).
        cases.append(("bare mitmdump, allowed", None, "upload.example.com",
                      f"127.0.0.1:{env.upstream.port}"))
    rows = []
    for n, (label, config, host, target) in enumerate(cases):
        say(f"[upload] {label}: {args.uploads} x {args.upload_mib} MiB from {HOSTILE_SRC}")
        proxy = env.start(f"upload-{n}", config)
        try:
            for _ in range(3):  # warm-up: a small allowed upload, so imports and TLS are done
                upload(env, proxy.port, "upload.example.com",
                       "upload.example.com:443" if config is not None
                       else f"127.0.0.1:{env.upstream.port}", 4096, 10, args.upload_stall)
            time.sleep(0.5)
            before = proxy.rss()
            fds_before = proxy.fds()
            reset = proxy.reset_peak()
            results = []
            for i in range(args.uploads):
                r = upload(env, proxy.port, host, target, size, args.upload_timeout,
                           args.upload_stall)
                results.append(r)
                say(f"  upload {i + 1}: {r['outcome']}; client sent {r['sent'] / MIB:.1f} MiB "
                    f"in {r['seconds']:.1f} s; proxy RSS {proxy.rss() / 1e6:.0f} MB")
                with env.upstream.lock:
                    env.upstream.requests.clear()  # the bodies it kept
            time.sleep(1.0)  # every client socket is closed by now
            after = proxy.rss()
            hwm = proxy.hwm()
            fds_after = proxy.fds()
            left = proxy_sockets(proxy.port)
        finally:
            proxy.stop()
        row: dict[str, Any] = {
            "case": label, "uploads": results, "rss_before": before, "rss_after": after,
            "hwm": hwm, "hwm_reset": reset, "peak_growth": hwm - before,
            "rss_growth": after - before, "fds_before": fds_before, "fds_after": fds_after,
            "sockets_left": left,
        }
        say(f"  RSS before {before / 1e6:.0f} MB, peak {hwm / 1e6:.0f} MB "
            f"(+{row['peak_growth'] / 1e6:.0f} MB), after {after / 1e6:.0f} MB "
            f"({row['rss_growth'] / 1e6:+.0f} MB)" + ("" if reset else " [peak not reset]")
            + f"; 1 s after the client closed: proxy descriptors {fds_before} -> {fds_after}, "
            f"its sockets {left or 'none'}")
        rows.append(row)
    return rows


# --- part: idle --------------------------------------------------------------------------

HALF_HEAD = b"POST https://api.example.com/x HTTP/1.1\r\nHost: api.example.com\r\nReferer: http"


@dataclass
class Idle:
    proxy: str
    kind: str
    sock: socket.socket
    opened: float  # monotonic: connect, or the CONNECT reply
    closed: float | None = None


def open_idle(env: Env, proxy: Running, kind: str, n: int) -> list[Idle]:
    out = []
    for _ in range(n):
        if kind == "connect":
            sock = tunnel(env, proxy.port, "api.example.com:443", HOSTILE_SRC, 10)
        else:
            sock = socket.socket()
            sock.settimeout(10)
            sock.bind((HOSTILE_SRC, 0))
            sock.connect(("127.0.0.1", proxy.port))
            if kind == "half-head":
                sock.sendall(HALF_HEAD)
        sock.setblocking(False)
        out.append(Idle(proxy.name, kind, sock, time.monotonic()))
    return out


def part_idle(env: Env, args: argparse.Namespace) -> dict[str, Any]:
    proxies = [env.start("idle-wxgate", base_config(env.resolve()))]
    if not args.no_bare:
        proxies.append(env.start("idle-bare", None))
    wx = proxies[0]
    try:
        normal_call(env, wx.port, "/warm")
        fds_start = {p.name: p.fds() for p in proxies}
        kinds = [("silent", args.idle_silent), ("half-head", args.idle_half),
                 ("connect", args.idle_connect)]
        conns: list[Idle] = []
        say(f"[idle] opening {sum(n for _, n in kinds)} connections from {HOSTILE_SRC} on "
            + " and ".join(p.name for p in proxies))
        for p in proxies:
            for kind, n in kinds:
                conns += open_idle(env, p, kind, n)
        last_open = time.monotonic()
        fds_open = {p.name: p.fds() for p in proxies}
        rss_open = {p.name: p.rss() for p in proxies}
        say(f"  opened in {last_open - min(c.opened for c in conns):.1f} s; proxy descriptors "
            + ", ".join(f"{k} {fds_start[k]} -> {v} (RSS {rss_open[k] / 1e6:.0f} MB)"
                        for k, v in fds_open.items()))
        sel = selectors.DefaultSelector()
        for c in conns:
            sel.register(c.sock, selectors.EVENT_READ, c)
        calls: list[dict[str, Any]] = []
        call_times = [t for t in (5.0, 15.0, 25.0, 29.0, 32.0) if t < args.idle_wait]
        open_at_35: dict[tuple[str, str], int] | None = None
        fds_35: dict[str, int] = {}
        checked_35 = 35.0 > args.idle_wait
        last_report = 0.0
        while True:
            elapsed = time.monotonic() - last_open
            if call_times and elapsed >= call_times[0]:
                t = call_times.pop(0)
                code, ms = normal_call(env, wx.port, f"/during-{int(t)}")
                still = sum(1 for c in conns if c.proxy == wx.name and c.closed is None)
                calls.append({"at_s": t, "status": code, "ms": ms, "idle_open": still})
                say(f"  t={elapsed:4.1f} s normal call to wxgate: {code} in {ms:.0f} ms "
                    f"({still} idle connections open on it)")
            if not checked_35 and elapsed >= 35.0:
                checked_35 = True
                open_at_35 = {}
                for c in conns:
                    if c.closed is None:
                        key = (c.proxy, c.kind)
                        open_at_35[key] = open_at_35.get(key, 0) + 1
                fds_35 = {p.name: p.fds() for p in proxies}
            if elapsed - last_report >= 5:
                last_report = elapsed
                say(f"  t={elapsed:4.1f} s open: " + ", ".join(
                    f"{p.name} {sum(1 for c in conns if c.proxy == p.name and c.closed is None)}"
                    for p in proxies))
            wx_open = any(c.proxy == wx.name and c.closed is None for c in conns)
            if elapsed >= args.idle_wait or (checked_35 and not wx_open):
                break
            for ready, _ in sel.select(timeout=0.05):
                conn: Idle = ready.data
                try:
                    data = conn.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    conn.closed = time.monotonic()
                    sel.unregister(conn.sock)
        if open_at_35 is None:
            open_at_35 = {}
            for c in conns:
                if c.closed is None:
                    open_at_35[(c.proxy, c.kind)] = open_at_35.get((c.proxy, c.kind), 0) + 1
            fds_35 = {p.name: p.fds() for p in proxies}
        for c in conns:
            c.sock.close()
        sel.close()
        time.sleep(0.5)
        fds_end = {p.name: p.fds() for p in proxies}
    finally:
        for p in proxies:
            p.stop()
    groups: dict[str, dict[str, Any]] = {}
    for p in proxies:
        for kind, _n in [*kinds, ("all", 0)]:
            mine = [c for c in conns if c.proxy == p.name and (kind == "all" or c.kind == kind)]
            times = sorted(c.closed - c.opened for c in mine if c.closed is not None)
            entry: dict[str, Any] = {"opened": len(mine), "closed": len(times),
                                     "open_at_35s": sum(v for (pn, k), v in open_at_35.items()
                                                        if pn == p.name and kind in ("all", k))}
            if times:
                entry.update(min=times[0], median=statistics.median(times), max=times[-1])
            groups[f"{p.name}/{kind}"] = entry
            say(f"  {p.name:12} {kind:9} opened {entry['opened']:3}, closed {entry['closed']:3}"
                + (f" after min {entry['min']:.2f} / median {entry['median']:.2f} / max "
                   f"{entry['max']:.2f} s" if times else "")
                + f"; open at 35 s: {entry['open_at_35s']}")
    say("  proxy descriptors at 35 s: " + ", ".join(f"{k} {v}" for k, v in fds_35.items())
        + "; after the client closed all: " + ", ".join(f"{k} {v}" for k, v in fds_end.items()))
    return {"groups": groups, "calls": calls, "fds_start": fds_start, "fds_open": fds_open,
            "rss_open": rss_open,
            "fds_35": fds_35, "fds_end": fds_end}


# --- part: ws ----------------------------------------------------------------------------

def part_ws(env: Env, args: argparse.Namespace) -> list[dict[str, Any]]:
    from websockets.sync.client import connect
    from websockets.sync.server import ServerConnection, serve

    def echo(conn: ServerConnection) -> None:
        for message in conn:
            conn.send(message)

    server = serve(echo, "127.0.0.1", 0, ssl=env.certs.server_context, compression=None,
                   max_size=None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ws_port = server.socket.getsockname()[1]
    rows = []
    try:
        cases: list[tuple[str, dict[str, Any] | None, str]] = [
            ("wxgate", base_config(env.resolve({"ws.example.com": f"127.0.0.1:{ws_port}"})),
             "wss://ws.example.com/echo")]
        if not args.no_bare:
            cases.append(("bare mitmdump", None, f"wss://127.0.0.1:{ws_port}/echo"))
        for n, (label, config, url) in enumerate(cases):
            rows.append(ws_case(env, args, f"ws-{n}", label, config, url, connect))
    finally:
        server.shutdown()
    return rows


def ws_case(env: Env, args: argparse.Namespace, name: str, label: str,
            config: dict[str, Any] | None, url: str, connect: Callable[..., Any]
            ) -> dict[str, Any]:
    frames, size = args.ws_frames, args.ws_frame_kib * 1024
    say(f"[ws] {label}: {frames:,} frames of {size // 1024} KiB, echoed, one wss socket")
    proxy = env.start(name, config)
    tls = ssl.create_default_context(cafile=str(env.proxy_ca))
    payload = os.urandom(size)
    samples: list[tuple[int, int]] = []
    row: dict[str, Any] = {"case": label, "frames": frames, "frame_bytes": size}
    try:
        ws = connect(url, proxy=f"http://127.0.0.1:{proxy.port}", ssl=tls,
                     server_hostname="ws.example.com", additional_headers={"Referer": REFERER},
                     user_agent_header=UA, open_timeout=15, compression=None, max_size=None)
        with ws:
            for _ in range(50):  # warm-up
                ws.send(payload)
                ws.recv(timeout=10)
            time.sleep(0.5)
            before = proxy.rss()
            row["hwm_reset"] = proxy.reset_peak()
            samples.append((0, before))
            started = time.monotonic()
            done = 0
            batch = 50
            step = max(frames // 4, 1)
            while done < frames:
                if time.monotonic() - started > args.ws_timeout:
                    say(f"  stopped after {args.ws_timeout:.0f} s")
                    break
                n = min(batch, frames - done)
                for _ in range(n):
                    ws.send(payload)
                for _ in range(n):
                    got = ws.recv(timeout=20)
                    assert len(got) == size
                done += n
                if done % step == 0 or done == frames:
                    samples.append((done, proxy.rss()))
                    say(f"  {done:6,} frames: proxy RSS {samples[-1][1] / 1e6:.0f} MB")
            seconds = time.monotonic() - started
            time.sleep(1.0)
            open_rss = proxy.rss()
            hwm = proxy.hwm()
        time.sleep(1.0)
        closed_rss = proxy.rss()
    finally:
        proxy.stop()
    row.update(done=done, seconds=seconds, rss_before=before, rss_open=open_rss,
               rss_closed=closed_rss, hwm=hwm, samples=samples,
               growth_open=open_rss - before, peak_growth=hwm - before)
    say(f"  {done:,} frames in {seconds:.1f} s ({2 * done / seconds:,.0f} messages/s through "
        f"the proxy); RSS {before / 1e6:.0f} MB before, {open_rss / 1e6:.0f} MB after "
        f"(+{row['growth_open'] / 1e6:.0f} MB, socket open), peak {hwm / 1e6:.0f} MB, "
        f"{closed_rss / 1e6:.0f} MB after close")
    return row


# --- main --------------------------------------------------------------------------------

PARTS = ("log", "upload", "idle", "ws")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated, from {', '.join(PARTS)} (default: all)")
    parser.add_argument("--log-calls", type=int, default=150)
    parser.add_argument("--upload-mib", type=int, default=64)
    parser.add_argument("--uploads", type=int, default=3, help="uploads per proxy")
    parser.add_argument("--upload-timeout", type=float, default=60.0)
    parser.add_argument("--upload-stall", type=float, default=5.0,
                        help="seconds without progress that count as a stalled upload")
    parser.add_argument("--idle-silent", type=int, default=300)
    parser.add_argument("--idle-half", type=int, default=50)
    parser.add_argument("--idle-connect", type=int, default=50)
    parser.add_argument("--idle-wait", type=float, default=40.0,
                        help="seconds to watch the idle connections (at most)")
    parser.add_argument("--ws-frames", type=int, default=20_000)
    parser.add_argument("--ws-frame-kib", type=int, default=8)
    parser.add_argument("--ws-timeout", type=float, default=150.0)
    parser.add_argument("--no-bare", action="store_true", help="skip bare mitmdump")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")

    from mitmproxy.version import VERSION

    say(f"wxgate hostile-resource bench: Python {platform.python_version()}, mitmproxy "
        f"{VERSION}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; wxgate: "
        f"{' '.join(wxgate_cmd())}")
    results: dict[str, Any] = {"python": platform.python_version(), "mitmproxy": VERSION,
                               "cpus": os.cpu_count(), "started": time.time()}
    started = time.monotonic()
    if "log" in parts:
        results["log"] = part_log(args)
    with environment(args.keep) as env:
        if "upload" in parts:
            results["upload"] = part_upload(env, args)
        if "idle" in parts:
            results["idle"] = part_idle(env, args)
        if "ws" in parts:
            results["ws"] = part_ws(env, args)
    say(f"done in {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
