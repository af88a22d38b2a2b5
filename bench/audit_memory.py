"""Peak memory of `wxgate audit` over a large capture (not run by CI).

Writes N synthetic flows (default 100,000) to a mitmproxy flow file, audits it in a child
process (`python -m wxgate.cli audit`, HTML and JUnit included) and reads the child's own peak
resident set size (VmHWM in /proc/self/status) when it finishes. The target is under
300 MB, flat in the number of flows. Appends the figure to bench/RESULTS.md.

    python bench/audit_memory.py [--flows 100000] [--keep] [--no-record]

The capture: one mini program calling its API every 20 ms (each call 50 ms, so a few
in flight at once), 1 call in 20 to an unlisted host, 1 in 50 without a Referer (info),
a burst of 12 overlapping calls every 5,000 flows, and a WebSocket every 1,000 flows;
response bodies of 512 bytes. File order is completion order, as `mitmdump -w` writes,
so the audit has to sort by start time.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

APPID = "wx0123456789abcdef"
REFERER = f"https://servicewechat.com/{APPID}/0/page-frame.html"
UA = "Mozilla/5.0 (Linux; Android 14) MicroMessenger/8.0.50 MiniProgramEnv/android"
CONFIG = f"""\
apps:
  - appid: {APPID}
    domains:
      request: [https://api.example.com]
      connectSocket: [wss://ws.example.com]
log:
  console: "off"
"""
T0 = 1_764_000_000.0


def template(url: str, websocket: bool = False, referer: bool = True) -> dict[str, Any]:
    from mitmproxy import connection, http
    from mitmproxy.websocket import WebSocketData, WebSocketMessage
    from wsproto.frame_protocol import Opcode

    host = url.split("/")[2]
    headers = {"Host": host, "User-Agent": UA}
    if referer:
        headers["Referer"] = REFERER
    if websocket:
        headers.update({"Connection": "Upgrade", "Upgrade": "websocket"})
    flow = http.HTTPFlow(
        connection.Client(peername=("192.168.1.23", 50000), sockname=("0.0.0.0", 8080),
                          timestamp_start=T0),
        connection.Server(address=(host, 443)))
    flow.request = http.Request.make("GET", url.replace("wss://", "https://"), b"", headers)
    if websocket:
        flow.response = http.Response.make(101, b"", {"Upgrade": "websocket"})
        flow.websocket = WebSocketData(
            messages=[WebSocketMessage(Opcode.TEXT, True, b"ping", T0)], timestamp_end=T0)
    else:
        flow.response = http.Response.make(
            200, b'{"data":"' + b"x" * 500 + b'"}',
            {"Content-Type": "application/json; charset=utf-8"})
    return flow.get_state()


def write_capture(path: Path, count: int) -> None:
    """Synthetic flows, written in completion order; cheap: one state template per kind."""
    import uuid

    from mitmproxy.io import tnetstring

    kinds = {
        "ok": template("https://api.example.com/api/item"),
        "unlisted": template("https://evil.example.net/track"),
        "no_referer": template("https://api.example.com/api/me", referer=False),
        "socket": template("wss://ws.example.com/chat", websocket=True),
    }
    pending: list[tuple[float, bytes]] = []
    with path.open("wb") as fo:
        for i in range(count):
            start = T0 + i * 0.02
            duration = 0.05
            if i % 5000 < 12 and i >= 5000:
                start = T0 + (i - i % 5000) * 0.02 + (i % 5000) * 0.001
                duration = 1.0
            kind = ("socket" if i % 1000 == 999 else "unlisted" if i % 20 == 7
                    else "no_referer" if i % 50 == 13 else "ok")
            state = copy.deepcopy(kinds[kind])
            state["id"] = str(uuid.UUID(int=i))
            state["request"]["path"] = state["request"]["path"] + f"/{i}".encode()
            state["request"]["timestamp_start"] = start
            state["request"]["timestamp_end"] = start + 0.001
            end = start + duration
            state["response"]["timestamp_start"] = end - 0.001
            state["response"]["timestamp_end"] = end
            state["client_conn"]["timestamp_start"] = start
            if state.get("websocket"):
                end = start + 3.0
                state["websocket"]["timestamp_end"] = end
                state["websocket"]["messages"][0] = (1, True, b"ping", start + 1)
            blob = tnetstring.dumps(state)
            pending.append((end, blob))
            # Completion order: write what has ended by the time this call started.
            pending.sort(key=lambda item: item[0])
            while pending and pending[0][0] <= start:
                fo.write(pending.pop(0)[1])
        for _, blob in pending:
            fo.write(blob)


def child(args: list[str]) -> None:
    """Run the audit in this process, then report this process's own peak RSS."""
    from wxgate.cli import main

    started = time.monotonic()
    code = main(["audit", *args])
    elapsed = time.monotonic() - started
    status = Path("/proc/self/status").read_text()
    hwm_kb = int(next(line.split()[1] for line in status.splitlines()
                      if line.startswith("VmHWM:")))
    print(json.dumps({"exit": code, "vmhwm_kb": hwm_kb, "seconds": round(elapsed, 1)}))


def versions() -> str:
    from mitmproxy import version

    return f"Python {platform.python_version()}, mitmproxy {version.VERSION}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flows", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="keep the capture and reports")
    parser.add_argument("--no-record", action="store_true", help="don't append to RESULTS.md")
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wxgate-bench-"))
    capture, config = work / "capture.mitm", work / "wxgate.yaml"
    config.write_text(CONFIG)
    began = time.monotonic()
    write_capture(capture, opts.flows)
    written = time.monotonic() - began
    size_mb = capture.stat().st_size / 1e6
    print(f"wrote {opts.flows:,} flows, {size_mb:.0f} MB, in {written:.0f} s: {capture}")
    audit_args = [str(capture), "-c", str(config), "--no-progress",
                  "--jsonl", str(work / "audit.jsonl"), "--html", str(work / "audit.html"),
                  "--junit", str(work / "audit.xml")]
    command = [sys.executable, str(Path(__file__).resolve()), "--child", *audit_args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    lines = done.stdout.strip().splitlines()[:-1]
    peak_mb = result["vmhwm_kb"] / 1024
    verdict = "under" if peak_mb < 300 else "OVER"
    print("\n".join(lines[-4:]))
    print(f"peak RSS (VmHWM) {peak_mb:.0f} MB, {verdict} the 300 MB target; audit took "
          f"{result['seconds']} s; exit {result['exit']}")
    if not opts.no_record:
        results = ROOT / "bench" / "RESULTS.md"
        if not results.exists():
            results.write_text("# Benchmark results\n\nAppended by the scripts in bench/; "
                               "newest last.\n")
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        with results.open("a") as out:
            out.write(
                f"\n## audit memory, {stamp}\n\n"
                f"- command (from the repository root): `{sys.executable} "
                "bench/audit_memory.py --flows "
                f"{opts.flows}` (child: `python -m wxgate.cli audit CAPTURE -c CONFIG --jsonl "
                "--html --junit --no-progress`)\n"
                f"- versions: {versions()}, {platform.system()} {platform.machine()}, "
                f"{os.cpu_count()} CPUs (shared)\n"
                f"- input: {opts.flows:,} flows, {size_mb:.0f} MB flow file, written in "
                "completion order\n"
                f"- **peak RSS (VmHWM of the audit process): {peak_mb:.0f} MB** "
                f"(target < 300 MB); audit {result['seconds']} s, exit {result['exit']}\n")
    if not opts.keep:
        for item in work.iterdir():
            item.unlink()
        work.rmdir()
    return 0 if peak_mb < 300 else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        sys.exit(main())
