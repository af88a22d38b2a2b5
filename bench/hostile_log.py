"""Log growth and proxy memory under calls with huge client-controlled fields (not run by CI).

    python bench/hostile_log.py [--calls 150] [--field-bytes 1000000]
                                [--field referer|url|user-agent|mixed] [--src DIR] [--keep]

Starts a real `wxgate run` (tests/e2e/harness.py), warms it up with a few ordinary calls,
then sends N blocked mini-program calls (plain http:// to an unlisted host), each through
its own connection from 127.0.0.1, with a 1 MB Referer (the default, as in the issue), URL
path or User-Agent, or those three in turn (`mixed`). Reports the violation log's growth
per call, the proxy's RSS growth and peak (VmRSS / VmHWM of the `wxgate run` process), and
how long `GET /violations` takes afterwards (through the proxy, as `wxgate ctl --proxy`
calls it). Before log fields were cut, 150 calls with a 1 MB Referer grew the log by
300 MB and RSS by 320 MB, and `GET /violations` stalled the proxy for 10.8 s. `--src DIR`
runs the proxy from another checkout (e.g. `git archive HEAD` unpacked), for a
before/after comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.harness import (  # noqa: E402 - after the path is set
    APPID,
    MP_HEADERS,
    REFERER,
    Proxy,
    base_config,
    start_proxy,
)


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def raw_call(proxy: Proxy, path: str, headers: dict[str, str]) -> None:
    """One absolute-form http:// call; the proxy blocks it (the connection closes)."""
    head = f"GET http://evil.example.net{path} HTTP/1.1\r\nHost: evil.example.net\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as sock:
        sock.sendall(head.encode())
        while sock.recv(65536):
            pass


FIELDS = ("referer", "url", "user-agent")


def hostile_calls(proxy: Proxy, calls: int, size: int, field: str) -> None:
    junk = "a" * size
    for i in range(calls):
        headers = dict(MP_HEADERS)
        path = f"/x/{i}"
        kind = FIELDS[i % 3] if field == "mixed" else field
        if kind == "referer":
            headers["Referer"] = f"{REFERER}?{junk}"
        elif kind == "url":
            path += f"?{junk}"
        else:
            headers["User-Agent"] = f"{MP_HEADERS['User-Agent']} {junk}"
        raw_call(proxy, path, headers)


def violations_call(proxy: Proxy) -> tuple[float, int, int]:
    """Seconds for GET /violations through the proxy, the reply's bytes and entries."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=60) as sock:
        sock.sendall(b"GET http://wxgate.local/violations HTTP/1.1\r\n"
                     b"Host: wxgate.local\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(1 << 20):
            data += chunk
    took = time.perf_counter() - started
    body = data.partition(b"\r\n\r\n")[2]
    return took, len(body), len(json.loads(body)["violations"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=150)
    parser.add_argument("--field-bytes", type=int, default=1_000_000)
    parser.add_argument("--field", choices=(*FIELDS, "mixed"), default="referer")
    parser.add_argument("--src", type=Path, help="run the proxy from this checkout")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="wxgate-hostile-"))
    cmd = None
    if args.src:
        os.environ["PYTHONPATH"] = str(args.src.resolve())  # inherited by the proxy
        cmd = [sys.executable, "-m", "wxgate.cli", "run", "-c", str(workdir / "wxgate.yaml"),
               "-p", "0", "--listen-host", "127.0.0.1"]
    proxy = start_proxy(workdir, base_config({}), cmd=cmd)
    try:
        for i in range(20):  # warm-up: imports, caches, the first flows
            raw_call(proxy, f"/warm/{i}", MP_HEADERS)
        time.sleep(0.5)
        log_before = proxy.log_path.stat().st_size
        mem_before = proc_status(proxy.proc.pid)
        started = time.perf_counter()
        hostile_calls(proxy, args.calls, args.field_bytes, args.field)
        elapsed = time.perf_counter() - started
        time.sleep(0.5)
        log_after = proxy.log_path.stat().st_size
        mem_after = proc_status(proxy.proc.pid)
        took, reply_bytes, entries = violations_call(proxy)
        lines = [e for e in proxy.log() if e.get("event") == "violation"]
        longest = max(len(json.dumps(e, ensure_ascii=False)) for e in lines)
    finally:
        proxy.stop()
    grown = log_after - log_before
    what = "Referer, URL or User-Agent in turn" if args.field == "mixed" else args.field
    print(f"wxgate hostile-field bench: {args.calls} blocked calls, each with a "
          f"{args.field_bytes:,}-byte {what}; app {APPID}; source {args.src or ROOT}")
    print(f"  sent in {elapsed:.1f} s")
    print(f"  log growth: {grown:,} bytes, {grown / args.calls:,.0f} bytes per call; "
          f"longest line {longest:,} bytes")
    print(f"  proxy RSS: {mem_before['VmRSS'] / 1e6:.1f} MB before, "
          f"{mem_after['VmRSS'] / 1e6:.1f} MB after "
          f"(+{(mem_after['VmRSS'] - mem_before['VmRSS']) / 1e6:.1f} MB), "
          f"peak {mem_after['VmHWM'] / 1e6:.1f} MB")
    print(f"  GET /violations: {took * 1000:.0f} ms, {reply_bytes:,} bytes, {entries} entries")
    if args.keep:
        print(f"  work directory: {workdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
