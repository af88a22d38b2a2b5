"""The operator's summaries break the counts down by device, the live line briefly."""

from __future__ import annotations

from pathlib import Path

from wxgate.summary import final_summary, summary_line

from .addon_helpers import APPID, runtime_for


def test_live_line_names_the_busiest_two_devices(tmp_path: Path):
    runtime = runtime_for(tmp_path)
    for i, address in enumerate(("192.168.1.23", "192.168.1.24", "192.168.1.25")):
        runtime.devices.start(address, APPID, f"f{i}")
    runtime.inflight.force_acquire(("192.168.1.24", APPID, "shared"), "f1")
    runtime.count_violation("192.168.1.25", "domain.not_listed", "error", "blocked")
    runtime.count_violation("192.168.1.25", "domain.not_listed", "error", "blocked")
    line = summary_line(runtime)
    assert line == ("flows 0 | blocked 0 | violations: 2 error, 0 warning, 0 info | devices 3: "
                    "192.168.1.24 (1 in flight), 192.168.1.25 (2 errors) +1 | in flight 1")


def test_live_line_without_devices_is_unchanged(tmp_path: Path):
    assert summary_line(runtime_for(tmp_path)).endswith("| in flight 0")


def test_final_summary_lists_every_device_and_its_rules(tmp_path: Path):
    runtime = runtime_for(tmp_path)
    runtime.devices.start("192.168.1.23", APPID, "f1")
    runtime.devices.start("192.168.1.24", APPID, "f2")
    runtime.count_violation("192.168.1.24", "background.blocked", "error", "blocked")
    lines = final_summary(runtime)
    assert lines[-3:] == ["by device:", "  192.168.1.23: 1 call; no violations",
                          "  192.168.1.24: 1 call; background.blocked 1"]
