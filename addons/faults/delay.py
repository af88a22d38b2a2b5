"""`delay_ms` (+ `jitter_ms`): add latency before the call goes upstream."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from .base import Action, Fault, Report, number


class Delay(Fault):
    kind = "delay"
    fields = ("delay_ms", "jitter_ms")

    def __init__(self, match: Any, probability: float, delay_ms: int, jitter_ms: int = 0) -> None:
        super().__init__(match, probability)
        self.delay_ms, self.jitter_ms = delay_ms, jitter_ms

    @classmethod
    def parse_fields(cls, data: Mapping[str, Any], report: Report) -> dict[str, Any] | None:
        delay = number(data, "delay_ms", report, minimum=0)
        jitter = number(data, "jitter_ms", report, minimum=0) if "jitter_ms" in data else 0
        if delay is None or jitter is None:
            return None
        return {"delay_ms": delay, "jitter_ms": jitter}

    def action(self, rng: random.Random) -> Action:
        jitter = rng.uniform(-self.jitter_ms, self.jitter_ms) if self.jitter_ms else 0.0
        return Action(self.kind, delay_s=max(0.0, self.delay_ms + jitter) / 1000)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "delay_ms": self.delay_ms, "jitter_ms": self.jitter_ms}
