"""The config option: loaded into the Runtime, a bad reload refused with the old policy kept,
and connection_strategy forced to lazy so a blocked host is never contacted."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons
from wxgate import events
from wxgate.config_loader import ConfigLoader
from wxgate.state import Runtime

from .addon_helpers import APPID, CONFIG


def test_config_loads_and_strategy_becomes_lazy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    good = tmp_path / "good.yaml"
    good.write_text(CONFIG)
    runtime = Runtime()
    loader = ConfigLoader(runtime)
    with taddons.context(Proxyserver(), loader) as tctx:
        assert tctx.options.connection_strategy == "eager"
        tctx.configure(loader, wxgate_config=str(good))
        assert tctx.options.connection_strategy == "lazy"
        assert [a.appid for a in runtime.config.apps] == [APPID]
    events.SINK.close()


def test_bad_reload_is_refused_and_old_policy_kept(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    good = tmp_path / "good.yaml"
    good.write_text(CONFIG)
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.replace("mode: enforce", "mode: enforcing"))
    runtime = Runtime()
    loader = ConfigLoader(runtime)
    with taddons.context(loader) as tctx:
        tctx.configure(loader, wxgate_config=str(good))
        with pytest.raises(exceptions.OptionsError, match=r"bad.yaml:1: mode: must be"):
            tctx.configure(loader, wxgate_config=str(bad))
        assert runtime.config.source == str(good)
        assert runtime.mode == "enforce"
    events.SINK.close()
    logged = (tmp_path / "wxgate-violations.jsonl").read_text()
    assert '"event": "config_rejected"' in logged


def test_mode_override_is_validated(tmp_path: Path):
    runtime = Runtime()
    loader = ConfigLoader(runtime)
    with taddons.context(loader) as tctx:
        tctx.configure(loader, wxgate_mode="report")
        assert runtime.mode == "report"
        with pytest.raises(exceptions.OptionsError, match="enforce or report"):
            tctx.configure(loader, wxgate_mode="loud")
        assert runtime.mode == "report"
