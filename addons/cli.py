"""The `wxgate` command: a thin launcher around mitmdump/mitmweb, and offline checks.

Argument wiring stays cheap: the policy core, mitmproxy and each subcommand's module are
imported only by the command that needs them, so `wxgate ctl status` and `wxgate --version`
start without loading the proxy's addons.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .configfile import config_path

if TYPE_CHECKING:
    from .policy.config import AppConfig

# The mitmproxy script: `mitmdump -s SCRIPT` runs the same addons without this launcher.
SCRIPT = Path(__file__).resolve().parent / "wxgate_addons.py"

# The subcommands that live in modules of their own: name -> (module, one-line help). The
# module's `add_arguments(parser)` adds the rest; it is imported only for its own command.
COMMANDS: dict[str, tuple[str, str]] = {
    "ctl": ("ctl", "drive a running proxy's control API"),
    "check-cert": ("check_cert", "connect to HOST[:PORT] and judge every certificate/TLS rule"),
    "audit": ("audit", "run the rules offline over captured flows (mitmproxy flow files, HAR)"),
    "report": ("report", "render a violation log (JSONL) as HTML and JUnit XML"),
}


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def versions() -> str:
    """wxgate's and mitmproxy's versions, as installed."""
    from importlib import metadata

    def of(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "(not installed)"

    python = ".".join(str(n) for n in sys.version_info[:3])
    return f"wxgate {of('wxgate')} (mitmproxy {of('mitmproxy')}, Python {python})"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def resolved_lines(app: AppConfig) -> list[str]:
    """What check-config resolved for one app, each value with the file it came from."""
    from .policy.clients import canonical_referer
    from .policy.rules import APIS

    src = app.sources

    def source(key: str) -> str:
        return src.get(key) or "default"

    lines = [f"app {app.appid}",
             f"  appid: {app.appid} ({source('appid')})",
             f"  Referer version {app.version} ({source('version')}): "
             f"{canonical_referer(app.appid, app.version)}"]
    for api in APIS:
        entries = app.domains.get(api, ())
        listed = ", ".join(e.raw for e in entries)
        lines.append(f"  domains {api}: {listed} ({source(f'domains.{api}')})" if entries
                     else f"  domains {api}: none")
    if app.business_domains:
        listed = ", ".join(e.raw for e in app.business_domains)
        lines.append(f"  business_domains: {listed}")
    for api in APIS:
        lines.append(f"  networkTimeout {api}: {app.network_timeout[api]} ms "
                     f"({source(f'network_timeout.{api}')})")
    if app.url_check is None:
        lines.append("  urlCheck: not set" + (" in the project" if app.project else
                                               " (no project)"))
    else:
        line = f"  urlCheck: {'on' if app.url_check else 'off'} ({source('url_check')})"
        if not app.url_check:
            line += ": DevTools checks no domains, TLS or certificates; wxgate is the only check"
        lines.append(line)
    return lines


def cmd_check_config(args: argparse.Namespace) -> int:
    """Every problem and warning on stderr, one located line each; on success, what each
    app resolved to on stdout."""
    from .policy.config import ConfigError, check_config

    path = config_path(args.config)
    try:
        config, problems = check_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            _say(str(problem))
        return 2
    for problem in [*problems, *config.warnings]:
        _say(str(problem))
    if problems:
        _say(f"{path}: {_plural(len(problems), 'problem')}")
        return 1
    tail = f", {_plural(len(config.warnings), 'warning')}" if config.warnings else ""
    print(f"{path}: ok, {_plural(len(config.apps), 'app')}{tail}")
    for app in config.apps:
        print("\n".join(resolved_lines(app)))
    return 0


# mitmweb's flow list: its default columns, and the comment, which holds the rule ids.
WEB_COLUMNS = ("tls", "icon", "path", "method", "status", "comment", "size", "time")


def mitmproxy_args(args: argparse.Namespace, path: Path) -> list[str]:
    """mitmdump's (or mitmweb's) arguments for `wxgate run`.

    wxgate prints a line per violation, so by default mitmdump prints no line per flow
    (and `cmd_run` mutes mitmproxy's connection chatter); -v gives mitmproxy's usual
    output back, -vv its verbose one, -q leaves only its errors. mitmweb's flow list gets
    the comment column. An option the user sets with --set is left to them.
    """
    given = {item.split("=", 1)[0] for item in args.set or []}
    argv = [
        "--set", f"wxgate_config={path.resolve()}",
        "--set", "connection_strategy=lazy",
    ]
    if args.port is not None:
        argv += ["-p", str(args.port)]
    if args.listen_host is not None:
        argv += ["--listen-host", args.listen_host]
    if args.control_port is not None:
        argv += ["--set", f"wxgate_control_port={args.control_port}"]
    if args.web and "web_columns" not in given:
        for column in WEB_COLUMNS:
            argv += ["--set", f"web_columns={column}"]
    if not args.web and not args.quiet and not args.verbose and "flow_detail" not in given:
        argv += ["--set", "flow_detail=0"]
    for item in args.set or []:
        argv += ["--set", item]
    if args.quiet:
        argv.append("-q")
    elif args.verbose >= 2:
        argv.append("-v")
    return argv


def cmd_run(args: argparse.Namespace) -> int:
    from . import events
    from .policy.config import ConfigError, check_config

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
    if not args.verbose:
        events.mute_connection_log()
    events.take_terminal()  # before mitmproxy picks up stdout and stderr
    from mitmproxy.tools import cmdline
    from mitmproxy.tools import main as mitm

    # mitmproxy reads sys.argv[0] for its own messages.
    sys.argv = ["mitmweb" if args.web else "mitmdump", *argv]
    try:
        if args.web:
            from mitmproxy.tools.web.master import WebMaster
            mitm.run(with_wxgate(WebMaster), cmdline.mitmweb, argv)
        else:
            from mitmproxy.tools.dump import DumpMaster
            mitm.run(with_wxgate(DumpMaster), cmdline.mitmdump, argv, _dump_filters)
    except KeyboardInterrupt:
        pass
    return 0


def _dump_filters(args: argparse.Namespace) -> dict[str, str]:
    """What `mitmdump FILTER` sets, as mitmproxy's own `mitmdump()` does."""
    if args.filter_args:
        expression = " ".join(args.filter_args)
        return {"save_stream_filter": expression, "readfile_filter": expression,
                "dumper_filter": expression}
    return {}


def with_wxgate[M](master_cls: type[M]) -> type[M]:
    """`master_cls` with wxgate's addons where `mitmdump -s` would run them: just before
    mitmproxy's script loader, so a user's `-s` script still runs after them.

    Not as a script: mitmproxy delivers each event to a script through its loader, the
    script and the module (a walk of three objects and a new list per event, ~20 us of a
    call), and loads a script only after the proxy already listens. Not as a chain member
    of its own either: mitmproxy visits every chain member for each of a call's eight
    events (four hooks, each followed by `update`) through a context manager, a coroutine
    and two generators, about 90 calls per proxied call. The Pipeline takes the loader's
    place in the chain and stands in for it (`Pipeline.hold`): the loader's hooks run
    after wxgate's, and its scripts are walked right after the Pipeline for every event.

    Those walks are mitmproxy's own addon manager's. The master made here delivers events
    through `Dispatch` instead (installed first), which spends a `getattr` on a member
    with nothing to do; the Pipeline still makes wxgate's 23 addons one member, calling
    only those with the hook.
    """
    from mitmproxy.addons.script import ScriptLoader

    from . import dispatch
    from .pipeline import Pipeline, make_addons

    class WxgateMaster(master_cls):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            dispatch.install(self.addons)
            pipeline = Pipeline(make_addons())
            # Registered (named, loaded, its commands collected) before it holds the
            # loader, which is registered already and keeps its name and commands.
            self.addons.register(pipeline)
            chain = self.addons.chain
            at = next((i for i, addon in enumerate(chain) if isinstance(addon, ScriptLoader)),
                      None)
            if at is None:
                chain.append(pipeline)
            else:
                pipeline.hold(chain[at])
                chain[at] = pipeline

    return WxgateMaster


class _Version(argparse.Action):
    """--version, with the versions looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(versions())
        parser.exit()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `wxgate` parser. Of the commands in COMMANDS, only `command`'s module is imported
    to add its arguments (none for ""); None builds every command whole."""
    parser = argparse.ArgumentParser(
        prog="wxgate",
        description="Enforcing proxy for WeChat Mini Program traffic.",
    )
    parser.add_argument("--version", action=_Version,
                        help="print wxgate's and mitmproxy's versions and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the proxy (mitmdump, or mitmweb with --web)")
    run.add_argument("-c", "--config", help="config file (default: $WXGATE_CONFIG, "
                     "./wxgate.yaml, then the bundled config/default.yaml)")
    run.add_argument("-p", "--port", type=int, help="listen port (default 8080; 0 = any free)")
    run.add_argument("--listen-host", help="listen address (default: all interfaces)")
    run.add_argument("--web", action="store_true", help="run mitmweb (UI on :8081)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="a mitmproxy or wxgate option, passed through")
    run.add_argument("-q", "--quiet", action="store_true",
                     help="only wxgate's lines and mitmproxy's errors")
    run.add_argument("-v", "--verbose", action="count", default=0,
                     help="also mitmproxy's line per flow and its connection log "
                          "(client connect, ...); -vv: mitmproxy's verbose output")
    run.add_argument("--control-port", type=int,
                     help="also serve the control API on this loopback port")
    run.set_defaults(func=cmd_run)

    for name, (module, help_line) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_line)
        if command is None or command == name:
            importlib.import_module(f"{__package__}.{module}").add_arguments(command_parser)

    check = sub.add_parser("check-config", help="validate a config as the WeChat console does")
    check.add_argument("-c", "--config", help="config file")
    check.set_defaults(func=cmd_check_config)
    return parser


def command_of(argv: Sequence[str]) -> str:
    """The subcommand named in `argv` ("" for none): the first argument that is not an
    option, as `wxgate` itself takes no option with a value."""
    return next((arg for arg in argv if not arg.startswith("-")), "")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(command_of(argv)).parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
