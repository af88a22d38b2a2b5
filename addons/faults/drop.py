"""`drop: P`: fail a share P of the matching calls, as a network failure."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from .base import Action, Fault, Report, number


class Drop(Fault):
    kind = "drop"
    fields = ("drop",)

    @classmethod
    def parse_fields(cls, data: Mapping[str, Any], report: Report) -> dict[str, Any] | None:
        share = number(data, "drop", report, minimum=0, maximum=1, integer=False)
        return None if share is None else {"share": float(share)}

    def __init__(self, match: Any, probability: float, share: float) -> None:
        # The drop share is this kind's probability.
        super().__init__(match, probability * share)

    def action(self, rng: random.Random) -> Action:
        return Action(self.kind, drop=True)
