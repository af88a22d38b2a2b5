"""`wxgate audit FILE...`: the live addons, run offline over captured flows.

The command: reads the config, indexes each input (`capture.py`), replays it through the
addons the proxy runs (`replay.py`: in capture time, in parts on several cores when the
capture is large), and writes the lines, the summary and the reports. Violations go to a
JSONL file and the reports are rendered from it, so memory stays flat in the number of
flows: only the index (24 bytes a flow) and the calls in flight at the capture's current
time are held. A HAR is one JSON document, parsed whole as mitmproxy's own reader does,
and its entries are converted to flows one at a time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import events
from .capture import InputError, open_capture, plural
from .configfile import config_path
from .policy.config import Config, ConfigError, load_config
from .policy.rules import RULES
from .progress import Progress
from .replay import Stats, default_jobs, judges_tls, replay
from .report import (
    SEVERITIES,
    LogSummary,
    OutputError,
    ReportContext,
    iter_log,
    summarize,
    summary_lines,
    write_outputs,
)

TLS_RULES = tuple(r for r in RULES if r.startswith("tls.") and r != "tls.no_legacy")


# --- what could not be judged ---------------------------------------------------------------

def not_judged(stats: Stats, judges_tls: bool) -> dict[str, str]:
    out = {
        "background.interrupted": "a capture does not record when the app went to background; "
                                  "drive it live with the control API",
        "background.blocked": "a capture does not record when the app went to background; "
                              "drive it live with the control API",
        "tls.no_legacy": "needs a live probe of the TLS versions the server accepts: run "
                         "`wxgate check-cert HOST`",
    }
    if not judges_tls:
        out.update(dict.fromkeys(TLS_RULES, "no addon in this build judges upstream TLS"))
    elif stats.tls_chains == 0:
        out.update(dict.fromkeys(TLS_RULES, "no flow in this input kept its server's "
                                            "certificate chain (HAR never does)"))
    if stats.in_scope and stats.timeout_unjudged == stats.in_scope:
        out["timeout.exceeded"] = "no call in this input has a recorded end"
    return out


def notes_for(stats: Stats, judges_tls: bool, damage: list[str], apps: int) -> list[str]:
    notes = list(damage)
    notes.append(
        f"{plural(stats.flows, 'HTTP flow')} audited, {stats.in_scope} of them from mini "
        "programs; each violation's time is the start of its call in the capture.")
    notes.append("concurrency.exceeded and socket.exceeded are judged from overlapping "
                 "timestamps: a call is in flight from its request's start to its response's "
                 "end (or its error, or the socket's close).")
    notes.append("timeout.exceeded is judged from the request's start and the response's end "
                 "against the app's networkTimeout."
                 + (f" {plural(stats.timeout_unjudged, 'call')} without a recorded end could "
                    "not be judged." if stats.timeout_unjudged else ""))
    if judges_tls and 0 < stats.tls_chains < stats.https:
        notes.append(f"TLS rules are judged for {stats.tls_chains} of {stats.https} https "
                     "flows; the others kept no certificate chain (HAR entries never do).")
    if stats.har_flows:
        notes.append(f"{plural(stats.har_flows, 'flow')} came from HAR, which holds no TLS "
                     "data and no WebSocket lifetime beyond the entry's own time.")
    if stats.non_http:
        notes.append(f"{plural(stats.non_http, 'non-HTTP flow')} (TCP, UDP, DNS) were "
                     "skipped: no mini-program API makes them.")
    if stats.passthrough:
        notes.append(f"{plural(stats.passthrough, 'flow')} to passthrough hosts were not "
                     "judged: the proxy tunnels them untouched.")
    if not apps:
        notes.append("The config lists no app, so no call was judged as a mini program's.")
    if stats.unfinished:
        notes.append(f"{plural(stats.unfinished, 'call')} never ended in the capture; they "
                     "count as in flight until its end.")
    notes.append("Rules that need the live client (background.*) or a live server "
                 "(tls.no_legacy) are not judged offline.")
    return notes


# --- the command ----------------------------------------------------------------------------

@dataclass
class AuditResult:
    summary: LogSummary
    stats: Stats
    bad_inputs: list[str]
    internal_errors: list[str]
    not_judged: dict[str, str]
    notes: list[str]

    def exit_code(self, fail_on: str) -> int:
        if self.bad_inputs:
            return 2
        if self.internal_errors or self.summary.at_or_above(fail_on):
            return 1
        return 0


def audit(paths: list[Path], config: Config, jsonl: Path, *, cafile: str | None = None,
          progress: Progress | None = None, jobs: int = 1) -> AuditResult:
    """Audit the captures, writing every logged line to `jsonl`; the verdict and the counts.

    `jobs`: how many processes may replay one large capture side by side.
    """
    progress = progress or Progress(enabled=False)
    opts = {"ssl_verify_upstream_trusted_ca": cafile} if cafile else {}
    stats, bad, damage, internal = Stats(), [], [], []
    with jsonl.open("w", encoding="utf-8") as out:
        for path in paths:
            try:
                capture = open_capture(path, progress)
            except InputError as exc:
                bad.append(str(exc))
                continue
            found = replay(capture, config, out, opts=opts, progress=progress, jobs=jobs)
            progress.clear()
            stats.add(found.stats)
            stats.non_http += capture.non_http
            if capture.kind == "har":
                stats.har_flows += capture.count
            internal += found.errors
            if found.damage:
                bad.append(found.damage)
                damage.append(found.damage)
    tls = judges_tls()
    return AuditResult(
        summary=summarize(lambda: iter_log(jsonl)),
        stats=stats,
        bad_inputs=bad,
        internal_errors=internal,
        not_judged=not_judged(stats, tls),
        notes=notes_for(stats, tls, damage, len(config.apps)),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`wxgate audit`'s arguments, on the parser `cli` made for it."""
    parser.description = ("Run the live proxy's addons over captured flows and report what "
                          "the WeChat client would have failed. Exit 0: no violation at or "
                          "above --fail-on; 1: some; 2: bad input.")
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="mitmproxy flow file (-w / save) or HAR export")
    parser.add_argument("-c", "--config", help="config file (default: $WXGATE_CONFIG, "
                        "./wxgate.yaml, then the bundled config/default.yaml)")
    parser.add_argument("--html", metavar="OUT", help="write the HTML report here")
    parser.add_argument("--junit", metavar="OUT", help="write JUnit XML here")
    parser.add_argument("--jsonl", metavar="OUT", help="write the violation lines here")
    parser.add_argument("--fail-on", choices=SEVERITIES, default="error",
                        help="exit 1 on a violation of this severity or worse (default: error)")
    parser.add_argument("--cafile", metavar="FILE",
                        help="extra trusted roots for the TLS rules (as "
                             "ssl_verify_upstream_trusted_ca)")
    parser.add_argument("--jobs", type=_jobs, metavar="N", default=default_jobs(),
                        help="processes that replay one large capture side by side "
                             "(default: the cores available, here %(default)s)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar, even on a terminal")
    parser.set_defaults(func=run_audit)


def _jobs(text: str) -> int:
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes (1 or more)")
    return jobs


def _say(message: str) -> None:
    print(f"wxgate audit: {events.terminal_safe(message)}", file=sys.stderr)


def run_audit(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            _say(str(problem))
        return 2
    if not config.apps:
        _say(f"{path} lists no app, so no call is judged as a mini program's.")
    if args.cafile and not Path(args.cafile).is_file():
        _say(f"{args.cafile} (--cafile) does not exist.")
        return 2
    progress = Progress(enabled=False if args.no_progress else None)
    with tempfile.TemporaryDirectory(prefix="wxgate-audit-") as tmp:
        jsonl = Path(args.jsonl) if args.jsonl else Path(tmp) / "violations.jsonl"
        try:
            result = audit([Path(f) for f in args.files], config, jsonl, cafile=args.cafile,
                           progress=progress, jobs=args.jobs)
        except OSError as exc:
            _say(f"{exc.filename or jsonl} cannot be written ({exc.strerror or exc}).")
            return 2
        except Exception as exc:  # noqa: BLE001 - a sentence, never a traceback (SPEC §2)
            _say(f"the audit stopped on an internal error ({type(exc).__name__}: {exc}); "
                 "nothing was judged, please report this.")
            return 2
        context = ReportContext(
            title="wxgate audit", inputs=list(args.files), notes=result.notes,
            not_judged=result.not_judged, apps=[a.appid for a in config.apps],
            rules=sorted(r for r in RULES))
        try:
            write_outputs(lambda: iter_log(jsonl), result.summary, context, args.html,
                          args.junit)
        except OutputError as exc:
            _say(str(exc))
            return 2
    for sentence in result.bad_inputs:
        _say(sentence)
    if result.internal_errors:
        _say(f"wxgate failed {plural(len(result.internal_errors), 'time')} while judging "
             f"(first: {result.internal_errors[0]}), so the audit fails closed.")
    _print_summary(result, args)
    return result.exit_code(args.fail_on)


def _print_summary(result: AuditResult, args: argparse.Namespace) -> None:
    stats = result.stats
    print(f"wxgate audit: {plural(len(args.files), 'file')}, "
          f"{plural(stats.flows, 'HTTP flow')} ({stats.in_scope} from mini programs)")
    for line in summary_lines(result.summary):
        print(line)
    if result.not_judged:
        print("not judged from this input:")
        reasons: dict[str, list[str]] = {}
        for rule, why in sorted(result.not_judged.items()):
            reasons.setdefault(why, []).append(rule)
        for why, rules in reasons.items():
            print(f"  {', '.join(rules)}: {why}")
    for label, written in (("JSONL", args.jsonl), ("HTML", args.html), ("JUnit", args.junit)):
        if written:
            print(f"{label}: {written}")
    failing = result.summary.at_or_above(args.fail_on)
    code = result.exit_code(args.fail_on)
    verdict = {0: "PASS", 1: "FAIL", 2: "BAD INPUT"}[code]
    print(f"{verdict}: {failing} violation{'s' if failing != 1 else ''} at or above "
          f"{args.fail_on}")
