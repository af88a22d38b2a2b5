"""`wxgate run`'s mitmproxy arguments (issue 18): by default no line per flow from mitmdump
(wxgate prints one per violation), -v and -vv give mitmproxy's output back, and mitmweb's
flow list gets the comment column that holds the rule ids."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import options
from mitmproxy.addonmanager import traverse
from mitmproxy.addons.script import ScriptLoader
from mitmproxy.hooks import RunningHook
from mitmproxy.proxy.layers.http import HttpRequestHeadersHook
from mitmproxy.test import tflow
from mitmproxy.tools.dump import DumpMaster
from wxgate.cli import WEB_COLUMNS, build_parser, mitmproxy_args, with_wxgate

from .addon_helpers import CONFIG, REFERER


def args_for(*argv: str) -> list[str]:
    return mitmproxy_args(build_parser().parse_args(["run", *argv]), Path("w.yaml"))


def sets(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == "--set"]


def test_by_default_mitmdump_prints_no_line_per_flow():
    argv = args_for()
    assert "flow_detail=0" in sets(argv)
    assert "-v" not in argv and "-q" not in argv


@pytest.mark.parametrize(("flags", "flow_detail", "passed"), [
    (["-v"], False, []),  # mitmproxy's own default output
    (["-vv"], False, ["-v"]),  # mitmproxy's verbose output
    (["-q"], False, ["-q"]),
])
def test_verbosity_flags(flags: list[str], flow_detail: bool, passed: list[str]):
    argv = args_for(*flags)
    assert ("flow_detail=0" in sets(argv)) is flow_detail
    assert [a for a in argv if a in ("-v", "-q")] == passed


def test_a_flow_detail_the_user_sets_is_theirs():
    """mitmproxy refuses two values for one option: wxgate passes none of its own."""
    assert [s for s in sets(args_for("--set", "flow_detail=2"))
            if s.startswith("flow_detail")] == ["flow_detail=2"]


def test_web_shows_the_comment_column_where_the_rule_ids_are():
    columns = [s.removeprefix("web_columns=") for s in sets(args_for("--web"))
               if s.startswith("web_columns=")]
    assert columns == list(WEB_COLUMNS)
    assert "comment" in columns
    assert not any(s.startswith("flow_detail") for s in sets(args_for("--web")))


def test_web_columns_the_user_sets_replace_wxgates():
    assert [s for s in sets(args_for("--web", "--set", "web_columns=path"))
            if s.startswith("web_columns")] == ["web_columns=path"]


def test_every_web_column_is_one_mitmweb_knows():
    from mitmproxy.tools.web.web_columns import AVAILABLE_WEB_COLUMNS

    assert set(WEB_COLUMNS) <= set(AVAILABLE_WEB_COLUMNS)


def test_wxgate_joins_mitmdump_where_a_script_would_run_ahead_of_the_users_scripts():
    """Registered with the master, not loaded as a script: its options exist before
    mitmproxy reads `--set`. It takes the script loader's place in the chain and stands in
    for it, so mitmproxy delivers each event to it and then to the loader's scripts,
    without a chain member of wxgate's own and without walking the loader; the loader
    keeps its name and commands."""

    async def chain() -> tuple[list[str], list[str], bool, bool, bool]:
        master = with_wxgate(DumpMaster)(options.Options(), with_termlog=False)
        loader = master.addons.get("scriptloader")
        return ([type(a).__name__ for a in master.addons.chain],
                [type(a).__name__ for a in traverse(master.addons.chain)],
                "wxgate_config" in master.options, isinstance(loader, ScriptLoader),
                "script.run" in master.commands.commands)

    names, walked, has_option, loader_found, loader_commands = asyncio.run(chain())
    assert names.count("Pipeline") == 1 and "ScriptLoader" not in names
    assert "ScriptLoader" not in walked
    assert has_option and loader_found and loader_commands


def test_a_users_script_runs_after_wxgate_and_sees_its_verdict(tmp_path: Path):
    """`--set scripts=` under `wxgate run`: the script, a sub-addon of the Pipeline that
    stands in for the loader, gets every event after wxgate's addons, once."""
    script = tmp_path / "seen.py"
    script.write_text(
        "seen = []\n"
        "class Seen:\n"
        "    def requestheaders(self, flow):\n"
        "        seen.append(flow.metadata.get('wxgate', {}).get('decision'))\n"
        "addons = [Seen()]\n")

    config = tmp_path / "wxgate.yaml"
    config.write_text(CONFIG)

    async def run() -> list[object]:
        master = with_wxgate(DumpMaster)(options.Options(), with_termlog=False)
        master.options.update(wxgate_config=str(config), scripts=[str(script)])
        loader = master.addons.get("scriptloader")
        for _ in range(100):  # mitmproxy loads a script in a task of its own
            if loader.addons[0].ns is not None:
                break
            await asyncio.sleep(0.05)
        flow = tflow.tflow()
        flow.request.url = "https://api.example.com/x"
        flow.request.headers["Referer"] = REFERER
        flow.client_conn.sni = "api.example.com"
        await master.addons.handle_lifecycle(HttpRequestHeadersHook(flow))
        return list(loader.addons[0].ns.seen)

    assert asyncio.run(run()) == ["allowed"]


@pytest.mark.usefixtures("unfrozen")  # `running` reaches StartupHeap
def test_scripts_given_and_taken_back_while_running_follow_the_loaders_list(tmp_path: Path):
    """The loader replaces its list of scripts on each `scripts` change and loads a new
    one in a task of its own: the Pipeline walks whatever the list holds at the time, and
    the loader still hears `running` (a script given later is told it runs)."""
    first, second = tmp_path / "first.py", tmp_path / "second.py"
    for script in (first, second):
        script.write_text(
            "seen = []\n"
            "class Seen:\n"
            "    def running(self):\n"
            "        seen.append('running')\n"
            "    def requestheaders(self, flow):\n"
            "        seen.append(flow.id)\n"
            "addons = [Seen()]\n")
    config = tmp_path / "wxgate.yaml"
    config.write_text(CONFIG)

    async def run() -> tuple[bool, list[str], list[str]]:
        master = with_wxgate(DumpMaster)(options.Options(), with_termlog=False)
        master.options.update(wxgate_config=str(config), scripts=[str(first)])
        loader = master.addons.get("scriptloader")
        await master.addons.trigger_event(RunningHook())

        async def loaded(path: Path) -> Any:
            for _ in range(100):  # mitmproxy loads a script in a task of its own
                script = next((s for s in loader.addons if s.path == str(path)), None)
                if script is not None and script.ns is not None:
                    return script.ns
                await asyncio.sleep(0.05)
            raise AssertionError(f"{path} never loaded")

        async def call() -> str:
            flow = tflow.tflow()
            await master.addons.handle_lifecycle(HttpRequestHeadersHook(flow))
            return flow.id

        ns_first = await loaded(first)
        one = await call()
        master.options.update(scripts=[str(second)])
        ns_second = await loaded(second)
        two = await call()
        seen_first, seen_second = list(ns_first.seen), list(ns_second.seen)
        assert seen_first[-1] == one and two not in seen_first
        assert seen_second[-1] == two
        return loader.is_running, seen_first, seen_second

    is_running, seen_first, seen_second = asyncio.run(run())
    assert is_running
    assert seen_second[0] == "running"
