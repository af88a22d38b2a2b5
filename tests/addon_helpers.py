"""Shared set-up for addon unit tests: a Runtime with one configured app, and flows."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from mitmproxy import http
from mitmproxy.test import tflow, tutils
from wxgate.policy.config import load_config
from wxgate.state import Runtime

APPID = "wx0123456789abcdef"
REFERER = f"https://servicewechat.com/{APPID}/0/page-frame.html"
CONFIG = f"""\
mode: enforce
block_with: fail
apps:
  - appid: {APPID}
    domains:
      request: [https://api.example.com]
      downloadFile: [https://cdn.example.com]
      uploadFile: [https://upload.example.com]
      connectSocket: [wss://ws.example.com]
log:
  console: "off"
"""


def runtime_for(tmp_path: Path, text: str = CONFIG) -> Runtime:
    path = tmp_path / "wxgate.yaml"
    path.write_text(text)
    runtime = Runtime()
    runtime.install(load_config(path))
    return runtime


def mp_flow(url: str = "https://api.example.com/x", method: str = "GET",
            **headers: str) -> http.HTTPFlow:
    """A live flow from a mini program (page-frame Referer) to url."""
    req = tutils.treq()
    req.url = url
    req.method = method
    req.headers["Referer"] = REFERER
    req.headers["User-Agent"] = "Mozilla/5.0 (iPhone) MicroMessenger MiniProgramEnv/iOS"
    for name, value in headers.items():
        req.headers[name.replace("_", "-")] = value
    flow = tflow.tflow(req=req)
    # The phone's TLS names the host it asks for (tflow's stand-in SNI is "address").
    flow.client_conn.sni = req.host if req.scheme == "https" else None
    return flow


def run_hook(result: Any) -> None:
    """Run what a hook returned: most of wxgate's hooks return None, and an awaitable
    only when the call has to wait (a queued call, a TLS probe still running)."""
    if result is not None:
        asyncio.run(result)
