"""`timeout: true`: hold the call until the app's networkTimeout fires."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from .base import Action, Fault, Report


class Timeout(Fault):
    kind = "timeout"
    fields = ("timeout",)

    @classmethod
    def parse_fields(cls, data: Mapping[str, Any], report: Report) -> dict[str, Any] | None:
        if data["timeout"] is not True:
            report("timeout", f"must be true, not {data['timeout']!r}")
            return None
        return {}

    def action(self, rng: random.Random) -> Action:
        return Action(self.kind, hold=True)
