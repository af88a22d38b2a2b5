"""Fault injection: a registry of kinds, parsing with located problems, seeded decisions.

Pure: no mitmproxy import. The Faults addon asks `FaultSet.decide` what to do with a
flow and carries it out.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .base import Action, Fault, Match, client_address, number, parse_match
from .delay import Delay
from .drop import Drop
from .status import Status
from .timeout import Timeout

REGISTRY: dict[str, type[Fault]] = {
    cls.fields[0]: cls for cls in (Delay, Timeout, Drop, Status)
}
ENVELOPE_KEYS = ("match", "probability")
BACKGROUND_KEYS = ("appid", "after_s", "for_s", "client")


@dataclass(frozen=True)
class BackgroundWindow:
    appid: str
    after_s: int
    for_s: int
    client: str | None = None  # one device; None: every device running the app


def parse_fault(
    data: Any, report: Callable[[str, str], None]
) -> Fault | BackgroundWindow | None:
    """One entry of `faults:`; every problem goes to report(key, message)."""
    if not isinstance(data, Mapping):
        report("", "must be a mapping")
        return None
    if "background" in data:
        return _parse_background(data, report)
    kinds = [key for key in data if key in REGISTRY]
    if len(kinds) != 1:
        found = f"{len(kinds)} ({', '.join(kinds)})" if kinds else "none"
        report("", f"must have exactly one fault kind of {', '.join(REGISTRY)} or background; "
                   f"found {found}")
        return None
    cls = REGISTRY[kinds[0]]
    # The shared envelope first, then the kind's own fields.
    match = parse_match(data.get("match"), report)
    probability = (number(data, "probability", report, minimum=0, maximum=1, integer=False)
                   if "probability" in data else 1.0)
    unknown = [k for k in data if k not in ENVELOPE_KEYS and k not in cls.fields]
    for key in unknown:
        report(key, f"unknown key '{key}' for a {cls.kind} fault "
                    f"(known: {', '.join(ENVELOPE_KEYS + cls.fields)})")
    own = cls.parse_fields(data, report)
    if match is None or probability is None or own is None or unknown:
        return None
    return cls(match, float(probability), **own)


def _parse_background(data: Mapping[str, Any], report: Callable[[str, str], None]
                      ) -> BackgroundWindow | None:
    spec = data["background"]
    if len(data) != 1 or not isinstance(spec, Mapping):
        report("background", "must be the only key, a mapping of appid, after_s, for_s "
                             "and optionally client")
        return None
    ok = True
    for key in spec:
        if key not in BACKGROUND_KEYS:
            report(f"background.{key}", f"unknown key '{key}' (known: "
                   f"{', '.join(BACKGROUND_KEYS)})")
            ok = False
    if not isinstance(spec.get("appid"), str):
        report("background.appid", "is required: the app to send to background")
        ok = False
    values = {}
    for key in ("after_s", "for_s"):
        if key not in spec:
            report(f"background.{key}", "is required (whole seconds)")
            ok = False
            continue
        values[key] = number(spec, key, lambda k, m: report(f"background.{k}", m), minimum=0)
        ok = ok and values[key] is not None
    client = None
    if "client" in spec:
        if isinstance(spec["client"], str):
            client = client_address(spec["client"], "background.client", report)
        else:
            report("background.client", "must be a string: the device's IP address")
        ok = ok and client is not None
    return BackgroundWindow(spec["appid"], values["after_s"], values["for_s"], client) \
        if ok else None


class FaultSet:
    """The active faults and the seeded source of every random choice.

    A decision depends only on the seed, the fault and the call's identity (method,
    URL and how many times that device made that call before), not on arrival order, so
    the same seed and the same traffic drop the same calls even under concurrency, and
    one phone's calls don't change which of another phone's calls are dropped.
    """

    def __init__(self, faults: list[Fault] | None = None, seed: int | None = None) -> None:
        self.faults: dict[int, Fault] = {}
        self._next_id = 1
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
        # device -> call -> times seen
        self._seen: dict[str | None, dict[str, int]] = {}
        self._seen_calls = 0
        for fault in faults or []:
            self.add(fault)

    def add(self, fault: Fault) -> int:
        fault_id = self._next_id
        self._next_id += 1
        self.faults[fault_id] = fault
        return fault_id

    def remove(self, fault_id: int | None = None) -> int:
        if fault_id is None:
            count = len(self.faults)
            self.faults.clear()
            return count
        return 1 if self.faults.pop(fault_id, None) else 0

    def describe(self) -> list[dict[str, Any]]:
        return [{"id": i, **f.describe()} for i, f in self.faults.items()]

    def forget(self, client: str) -> None:
        """The device was forgotten: its call counts go too."""
        self._seen_calls -= len(self._seen.pop(client, {}))

    def decide(self, appid: str | None, api: str, method: str, url: str,
               client: str | None = None) -> list[tuple[int, Action]]:
        matching = [(i, f) for i, f in self.faults.items()
                    if f.match.matches(appid, api, method, url, client)]
        if not matching:
            return []
        call = f"{method} {url}"
        if self._seen_calls > 100_000:  # bound memory on endless distinct URLs
            self._seen.clear()
            self._seen_calls = 0
        seen = self._seen.setdefault(client, {})
        n = seen.get(call, 0)
        if n == 0:
            self._seen_calls += 1
        seen[call] = n + 1
        actions = []
        for fault_id, fault in matching:
            rng = random.Random(f"{self.seed}|{fault_id}|{call}|{n}")
            if rng.random() < fault.probability:
                actions.append((fault_id, fault.action(rng)))
        return actions


__all__ = ["Action", "BackgroundWindow", "Fault", "FaultSet", "Match", "REGISTRY",
           "parse_fault"]
