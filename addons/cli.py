"""The `wxgate` command: a thin launcher around mitmdump/mitmweb, and offline checks."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import audit, check_cert, ctl, report
from .policy.config import ConfigError, check_config

# Package data: the same file is config/default.yaml in a checkout (a link to this one).
BUNDLED_DEFAULT = Path(__file__).resolve().parent / "default.yaml"
SCRIPT = Path(__file__).resolve().parent / "wxgate_addons.py"


def config_path(given: str | None) -> Path:
    """-c, then $WXGATE_CONFIG, then ./wxgate.yaml, then the bundled default."""
    if given:
        return Path(given)
    if os.environ.get("WXGATE_CONFIG"):
        return Path(os.environ["WXGATE_CONFIG"])
    if Path("wxgate.yaml").is_file():
        return Path("wxgate.yaml")
    return BUNDLED_DEFAULT


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def cmd_check_config(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    try:
        config, problems = check_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            _say(str(problem))
        return 2
    for problem in problems:
        _say(str(problem))
    if problems:
        _say(f"{path}: {len(problems)} problem{'s' if len(problems) != 1 else ''}")
        return 1
    print(f"{path}: ok, {len(config.apps)} app{'s' if len(config.apps) != 1 else ''}")
    return 0


def mitmproxy_args(args: argparse.Namespace, path: Path) -> list[str]:
    argv = [
        "-s", str(SCRIPT),
        "--set", f"wxgate_config={path.resolve()}",
        "--set", "connection_strategy=lazy",
    ]
    if args.port is not None:
        argv += ["-p", str(args.port)]
    if args.listen_host is not None:
        argv += ["--listen-host", args.listen_host]
    if args.control_port is not None:
        argv += ["--set", f"wxgate_control_port={args.control_port}"]
    for item in args.set or []:
        argv += ["--set", item]
    if args.quiet:
        argv.append("-q")
    return argv


def cmd_run(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    try:
        _, problems = check_config(path)
    except ConfigError as exc:
        problems = exc.problems
    if problems:
        for problem in problems:
            _say(str(problem))
        _say(f"wxgate: not started, {path} has {len(problems)} problem(s)")
        return 2
    argv = mitmproxy_args(args, path)
    from mitmproxy.tools import main as mitm

    # mitmproxy reads sys.argv[0] for its own messages.
    sys.argv = ["mitmweb" if args.web else "mitmdump", *argv]
    try:
        (mitm.mitmweb if args.web else mitm.mitmdump)(argv)
    except KeyboardInterrupt:
        pass
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wxgate",
        description="Enforcing proxy for WeChat Mini Program traffic.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the proxy (mitmdump, or mitmweb with --web)")
    run.add_argument("-c", "--config", help="config file (default: $WXGATE_CONFIG, "
                     "./wxgate.yaml, then the bundled config/default.yaml)")
    run.add_argument("-p", "--port", type=int, help="listen port (default 8080; 0 = any free)")
    run.add_argument("--listen-host", help="listen address (default: all interfaces)")
    run.add_argument("--web", action="store_true", help="run mitmweb (UI on :8081)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="a mitmproxy or wxgate option, passed through")
    run.add_argument("-q", "--quiet", action="store_true", help="no mitmproxy flow log")
    run.add_argument("--control-port", type=int,
                     help="also serve the control API on this loopback port")
    run.set_defaults(func=cmd_run)

    ctl.add_parser(sub)
    check_cert.add_parser(sub)
    audit.add_audit_parser(sub)
    report.add_report_parser(sub)

    check = sub.add_parser("check-config", help="validate a config as the WeChat console does")
    check.add_argument("-c", "--config", help="config file")
    check.set_defaults(func=cmd_check_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
