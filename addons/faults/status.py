"""`status: CODE`: answer the call with that HTTP status instead of the server."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from .base import Action, Fault, Report, number


class Status(Fault):
    kind = "status"
    fields = ("status",)

    def __init__(self, match: Any, probability: float, status: int) -> None:
        super().__init__(match, probability)
        self.status = status

    @classmethod
    def parse_fields(cls, data: Mapping[str, Any], report: Report) -> dict[str, Any] | None:
        code = number(data, "status", report, minimum=100, maximum=599)
        return None if code is None else {"status": code}

    def action(self, rng: random.Random) -> Action:
        return Action(self.kind, status=self.status)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "status": self.status}
