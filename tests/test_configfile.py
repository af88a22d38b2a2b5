"""Which config file a command reads: -c, then $WXGATE_CONFIG, then ./wxgate.yaml, then the
bundled default (SPEC §2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from wxgate.configfile import BUNDLED_DEFAULT, config_path


def test_config_path_prefers_flag_then_env_then_cwd_then_bundled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WXGATE_CONFIG", raising=False)
    assert config_path(None) == BUNDLED_DEFAULT
    (tmp_path / "wxgate.yaml").write_text("{}")
    assert config_path(None) == Path("wxgate.yaml")
    monkeypatch.setenv("WXGATE_CONFIG", "/env.yaml")
    assert config_path(None) == Path("/env.yaml")
    assert config_path("given.yaml") == Path("given.yaml")

