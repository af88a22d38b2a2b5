"""Load parts shared by the reliability tests and bench/run.py: a fast asyncio upstream
(plain HTTP and TLS, keep-alive, tiny body, slow and resetting endpoints) and an asyncio
keep-alive client that goes through the proxy (CONNECT + TLS, or absolute-form).

harness.Upstream is a thread per connection and records every request; that is right for
checking what reached the server, and too slow to be the server in a benchmark. This one
answers from one event loop and records only counts and the `tag=` of each request.

Also runnable, so that the benchmark can put each part in its own process:

    python -m tests.e2e.load serve --cert C --key K          # prints {"http": P, "https": P}
    python -m tests.e2e.load client --proxy-port P ...       # prints one JSON result line
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

BODY = b'{"ok":true}'
_OK = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
       b"Content-Length: %d\r\n\r\n" % len(BODY)) + BODY


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (kB) and friends from /proc/<pid>/status."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Vm"):
            found[key] = int(value.split()[0])
    return found


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# --------------------------------------------------------------------------- upstream


@dataclass
class UpstreamStats:
    connections: int = 0
    requests: int = 0
    resets: int = 0
    # tag= value -> monotonic time the request arrived (only requests that carry one)
    seen: dict[str, float] = field(default_factory=dict)
    # tag= value of /slow requests whose client went away before the answer
    closed_early: list[str] = field(default_factory=list)


class _Conn(asyncio.Protocol):
    """One upstream connection: HTTP/1.1, keep-alive, requests answered in order."""

    def __init__(self, server: FastUpstream) -> None:
        self.server = server
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.pending: asyncio.TimerHandle | None = None
        self.pending_tag = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.stats.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pending is not None:
            self.pending.cancel()
            self.server.stats.closed_early.append(self.pending_tag)
            self.pending = None
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        # One request at a time: a held /slow answer must go out before the next one
        # (no client here pipelines; this only keeps the order right if one did).
        while self.pending is None and self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            self.answer(head.split(" ", 2)[1])

    def answer(self, target: str) -> None:
        stats = self.server.stats
        stats.requests += 1
        parts = urlsplit(target)
        query = parse_qs(parts.query)
        tag = query.get("tag", [""])[0]
        if tag:
            stats.seen[tag] = time.monotonic()
        path = parts.path
        assert self.transport is not None
        if path.startswith("/slow"):
            ms = int(query.get("ms", ["500"])[0])
            self.pending_tag = tag
            self.pending = asyncio.get_running_loop().call_later(ms / 1000, self._release)
        elif path.startswith("/reset") or (
                path.startswith("/flaky") and self.server.rng.random() < self.server.reset_share):
            self.reset()
        else:
            self.transport.write(_OK)

    def _release(self) -> None:
        self.pending = None
        if self.transport is not None:
            self.transport.write(_OK)
            if self.buf:
                self.data_received(b"")

    def reset(self) -> None:
        """Status line, headers and part of the body, then a TCP reset: dies mid-response."""
        assert self.transport is not None
        self.server.stats.resets += 1
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 4096\r\n\r\n" + b"x" * 100)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0: close sends RST, not FIN, as a crashing server does.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


class FastUpstream:
    """Plain HTTP and (given a context) TLS listeners on 127.0.0.1, one event loop.

    GET /anything      -> 200 with a tiny JSON body
    GET /slow?ms=N     -> the same after N ms (noted in closed_early if the client leaves)
    GET /reset         -> dies mid-response with a TCP reset
    GET /flaky         -> like /reset for `reset_share` of requests (seeded), else 200
    """

    def __init__(self, tls: ssl.SSLContext | None = None, reset_share: float = 0.0,
                 seed: int = 1) -> None:
        self.tls = tls
        self.reset_share = reset_share
        self.rng = random.Random(seed)
        self.stats = UpstreamStats()
        self.http_port = 0
        self.https_port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._servers: list[asyncio.Server] = []
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        plain = await loop.create_server(lambda: _Conn(self), "127.0.0.1", 0, backlog=1024)
        self._servers.append(plain)
        self.http_port = plain.sockets[0].getsockname()[1]
        if self.tls is not None:
            secure = await loop.create_server(lambda: _Conn(self), "127.0.0.1", 0,
                                              ssl=self.tls, backlog=1024)
            self._servers.append(secure)
            self.https_port = secure.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for server in self._servers:
            server.close()

    def start_in_thread(self) -> FastUpstream:
        """Run on a loop of its own in a daemon thread; returns once both ports listen."""
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            loop.run_until_complete(self.start())
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=main, daemon=True, name="fast-upstream")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("upstream did not start")
        return self

    def close(self) -> None:
        loop = self.loop
        if loop is not None and self._thread is not None:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(5)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


# --------------------------------------------------------------------------- client


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


class Closed(ConnectionError):
    """The proxy closed the connection instead of answering: the client's fail callback."""


class Tunnel:
    """One keep-alive client connection through the proxy.

    `connect`: CONNECT host:port, then TLS with the proxy's CA (as a phone does);
    otherwise absolute-form plain HTTP to the proxy (as an http:// call does).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 authority: str, absolute: bool) -> None:
        self.reader = reader
        self.writer = writer
        self.authority = authority
        self.absolute = absolute
        # As a browser writes it: no default port (an explicit :443 is a wxgate violation).
        default = ":80" if absolute else ":443"
        self.host_header = authority.removesuffix(default)

    @classmethod
    async def open(cls, proxy_port: int, authority: str, *, tls: ssl.SSLContext | None,
                   server_hostname: str | None = None, timeout: float = 10.0) -> Tunnel:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", proxy_port), timeout)
        if tls is None:
            return cls(reader, writer, authority, absolute=True)
        try:
            writer.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
                raise Closed(f"CONNECT refused: {head[:40]!r}")
            name = server_hostname or authority.rsplit(":", 1)[0]
            await asyncio.wait_for(writer.start_tls(tls, server_hostname=name), timeout)
        except BaseException:
            writer.transport.abort()
            raise
        return cls(reader, writer, authority, absolute=False)

    def send(self, path: str, headers: dict[str, str] | None = None, method: str = "GET"
             ) -> None:
        """Write one request (no body); `read_reply` reads its answer."""
        target = f"http://{self.authority}{path}" if self.absolute else path
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host_header}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    async def request(self, path: str, headers: dict[str, str] | None = None,
                      method: str = "GET", timeout: float = 30.0) -> Reply:
        self.send(path, headers, method)
        return await asyncio.wait_for(self.read_reply(), timeout)

    async def read_reply(self) -> Reply:
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
            raise Closed(f"closed before a response ({type(exc).__name__})") from None
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        found = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                found[name.strip().lower()] = value.strip()
        try:
            if "content-length" in found:
                body = await self.reader.readexactly(int(found["content-length"]))
            elif found.get("transfer-encoding", "").lower() == "chunked":
                body = await self._chunked()
            else:
                body = await self.reader.read()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
            raise Closed(f"closed mid-response ({type(exc).__name__})") from None
        return Reply(int(status_line.split(" ", 2)[1]), found, body)

    async def _chunked(self) -> bytes:
        out = b""
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return out
            out += await self.reader.readexactly(size)
            await self.reader.readexactly(2)

    def abort(self) -> None:
        """Vanish: a reset, no goodbye (a phone leaving Wi-Fi, a killed app)."""
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        except (TimeoutError, OSError, ssl.SSLError):
            pass


@dataclass
class LoadResult:
    completed: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "completed": self.completed, "errors": self.errors,
            "seconds": round(self.seconds, 3), "rps": round(self.rps, 1),
            "p50_ms": round(percentile(self.latencies_ms, 50), 3),
            "p99_ms": round(percentile(self.latencies_ms, 99), 3),
        }


async def closed_loop(
    open_tunnel: Callable[[], Awaitable[Tunnel]], path: str, headers: dict[str, str],
    concurrency: int, seconds: float, warmup: float = 1.0,
) -> LoadResult:
    """`concurrency` keep-alive clients, each sending the next request when the last one
    is answered, for warm-up + `seconds`; counts and times only the measured window."""
    result = LoadResult()
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    end = start + seconds

    async def worker() -> None:
        tunnel: Tunnel | None = None
        while loop.time() < end:
            try:
                if tunnel is None:
                    tunnel = await open_tunnel()
                sent_at = loop.time()
                began = time.perf_counter()
                reply = await tunnel.request(path, headers)
                done = time.perf_counter()
            except (TimeoutError, OSError, ssl.SSLError, Closed):
                if loop.time() >= start:
                    result.errors += 1
                if tunnel is not None:
                    tunnel.abort()
                tunnel = None
                continue
            if reply.status != 200 and loop.time() >= start:
                result.errors += 1
            # In the window: started after warm-up, finished before the end.
            if sent_at >= start and loop.time() <= end:
                result.completed += 1
                result.latencies_ms.append((done - began) * 1000)
        if tunnel is not None:
            tunnel.abort()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = seconds
    return result


def client_context(ca_file: str | Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    return ctx


# --------------------------------------------------------------------------- entry points


def _serve(args: argparse.Namespace) -> None:
    tls = server_context(Path(args.cert), Path(args.key)) if args.cert else None
    upstream = FastUpstream(tls)

    async def main() -> None:
        await upstream.start()
        print(json.dumps({"http": upstream.http_port, "https": upstream.https_port}),
              flush=True)
        # Until the parent closes our stdin (or dies): bounded by the parent's lifetime.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())


def _client(args: argparse.Namespace) -> None:
    headers = dict(h.split(":", 1) for h in args.header or [])
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    tls = client_context(args.ca) if args.ca else None

    def opener() -> Awaitable[Tunnel]:
        return Tunnel.open(args.proxy_port, args.authority, tls=tls,
                           server_hostname=args.sni)

    result = asyncio.run(closed_loop(opener, args.path, headers, args.concurrency,
                                     args.seconds, args.warmup))
    print(json.dumps(result.summary()), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.load")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the fast upstream until stdin closes")
    serve.add_argument("--cert")
    serve.add_argument("--key")
    serve.set_defaults(func=_serve)
    client = sub.add_parser("client", help="closed-loop keep-alive load through a proxy")
    client.add_argument("--proxy-port", type=int, required=True)
    client.add_argument("--authority", required=True, help="host:port to CONNECT to / ask for")
    client.add_argument("--ca", help="the proxy's CA: CONNECT + TLS; without it absolute-form")
    client.add_argument("--sni", help="TLS server name (default: the authority's host)")
    client.add_argument("--path", default="/")
    client.add_argument("--header", action="append")
    client.add_argument("--concurrency", type=int, default=1)
    client.add_argument("--seconds", type=float, default=5.0)
    client.add_argument("--warmup", type=float, default=1.0)
    client.set_defaults(func=_client)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
