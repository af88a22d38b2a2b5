"""`wxgate ctl`: drive a running proxy's control API (SPEC §7).

Reaches the API through the proxy (`--proxy URL`, the API answers on
http://wxgate.local) or directly (`--control URL`, the loopback control port).
Exit 0 when the API accepted the call, 1 when it refused it, 2 when it can't be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from urllib.parse import quote

DEFAULT_PROXY = "http://127.0.0.1:8080"


def add_arguments(ctl: argparse.ArgumentParser) -> None:
    """`wxgate ctl`'s arguments, on the parser `cli` made for it."""
    where = ctl.add_mutually_exclusive_group()
    where.add_argument("--proxy", help=f"reach the API through this proxy (default "
                       f"{DEFAULT_PROXY})")
    where.add_argument("--control", help="the control port's URL, e.g. http://127.0.0.1:8082")
    ctl.add_argument("--token", help="control.token, for a caller that is not on loopback")
    actions = ctl.add_subparsers(dest="action", required=True)
    actions.add_parser("status", help="apps, devices, in-flight counts, background, faults")
    for name in ("background", "foreground"):
        p = actions.add_parser(name, help=f"send an app to {name}, on one device or on all")
        p.add_argument("appid")
        p.add_argument("--client", metavar="ADDR",
                       help="only on this device (its address, as GET /status lists it); "
                            "default: every device running the app")
    faults = actions.add_parser("faults", help="add (JSON), list or clear faults")
    faults.add_argument("op", choices=["add", "list", "clear", "remove"])
    faults.add_argument("value", nargs="?", help="fault JSON for add; id for remove")
    violations = actions.add_parser("violations", help="recent violations")
    violations.add_argument("--since", default="", help="sequence number or ISO timestamp")
    ctl.set_defaults(func=run)


def _request(args: argparse.Namespace) -> tuple[str, str, bytes | None]:
    action = args.action
    if action == "status":
        return "GET", "/status", None
    if action in ("background", "foreground"):
        device = f"?client={quote(args.client, safe='')}" if args.client else ""
        return "POST", f"/apps/{quote(args.appid, safe='')}/{action}{device}", None
    if action == "violations":
        return "GET", f"/violations?since={quote(args.since)}", None
    if args.op == "add":
        return "POST", "/faults", (args.value or "").encode()
    if args.op == "remove":
        return "DELETE", f"/faults/{args.value}", None
    if args.op == "clear":
        return "DELETE", "/faults", None
    return "GET", "/status", None


def run(args: argparse.Namespace) -> int:
    method, path, body = _request(args)
    if args.control:
        url = args.control.rstrip("/") + path
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    else:
        url = "http://wxgate.local" + path
        proxy = args.proxy or DEFAULT_PROXY
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))
    request = urllib.request.Request(url, data=body, method=method)
    if method != "GET":
        # The API refuses state changes that are not JSON (a web page's forged form post).
        request.add_header("Content-Type", "application/json")
    if args.token:
        request.add_header("Authorization", f"Bearer {args.token}")
    try:
        with opener.open(request, timeout=10) as response:
            payload = json.loads(response.read() or b"{}")
            code = 0
    except urllib.error.HTTPError as exc:
        payload = json.loads(exc.read() or b"{}")
        code = 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"wxgate ctl: cannot reach the control API at {url}: {reason}", file=sys.stderr)
        return 2
    if args.action == "faults" and args.op == "list":
        payload = {"faults": payload.get("faults", [])}
    print(json.dumps(payload, indent=2, ensure_ascii=False))
    return code
