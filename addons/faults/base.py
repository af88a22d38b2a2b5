"""The envelope every fault shares: what it matches and how often it fires.

Modelled on Toxiproxy's toxics: one small class per kind (a module each), a
registry, and this envelope validated before the kind's own fields.
"""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from ..devices import parse_device
from ..policy.rules import APIS

Report = Callable[[str, str], None]  # (key, message)

MATCH_KEYS = ("appid", "api", "method", "url", "client")


@dataclass(frozen=True)
class Match:
    appid: str | None = None
    api: str | None = None
    method: str | None = None
    url: str | None = None  # glob, e.g. "https://api.example.com/slow/*"
    client: str | None = None  # one device: its address as the proxy sees it

    def matches(self, appid: str | None, api: str, method: str, url: str,
                client: str | None = None) -> bool:
        return (
            (self.appid is None or self.appid == appid)
            and (self.api is None or self.api == api)
            and (self.method is None or self.method.upper() == method.upper())
            and (self.client is None or self.client == client)
            and (self.url is None or fnmatch.fnmatchcase(url, self.url))
        )

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Action:
    """What a fault does to one flow; the Faults addon carries it out."""

    kind: str
    delay_s: float = 0.0
    hold: bool = False
    drop: bool = False
    status: int | None = None


class Fault:
    kind: ClassVar[str]
    fields: ClassVar[tuple[str, ...]]

    def __init__(self, match: Match, probability: float) -> None:
        self.match = match
        self.probability = probability

    @classmethod
    def parse_fields(cls, data: Mapping[str, Any], report: Report) -> dict[str, Any] | None:
        raise NotImplementedError

    def action(self, rng: random.Random) -> Action:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "match": self.match.as_dict(),
                "probability": self.probability}


def parse_match(data: Any, report: Report) -> Match | None:
    if data is None:
        return Match()
    if not isinstance(data, Mapping):
        report("match", f"must be a mapping of {', '.join(MATCH_KEYS)}")
        return None
    ok = True
    for key in data:
        if key not in MATCH_KEYS:
            report(f"match.{key}", f"unknown key '{key}' (known: {', '.join(MATCH_KEYS)})")
            ok = False
    for key in MATCH_KEYS:
        if key in data and not isinstance(data[key], str):
            report(f"match.{key}", "must be a string")
            ok = False
    if isinstance(data.get("api"), str) and data["api"] not in APIS:
        report("match.api", f"must be one of {', '.join(APIS)}, not {data['api']!r}")
        ok = False
    values = {k: data.get(k) for k in MATCH_KEYS}
    if isinstance(values["client"], str):
        values["client"] = client_address(values["client"], "match.client", report)
        ok = ok and values["client"] is not None
    return Match(**values) if ok else None


def client_address(text: str, key: str, report: Report) -> str | None:
    """A device named in a fault: its address, as the proxy sees the phone's connection."""
    address = parse_device(text)
    if address is None:
        report(key, f"must be an IP address (a device is a client address), not {text!r}")
    return address


def number(data: Mapping[str, Any], key: str, report: Report, *, minimum: float,
           maximum: float | None = None, integer: bool = True) -> Any:
    raw: Any = data[key]
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(raw, bool) or not isinstance(raw, kinds):
        report(key, f"must be {'an integer' if integer else 'a number'}, not {raw!r}")
        return None
    value = cast(float, raw)
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        report(key, f"must be at least {minimum}{upper}, not {raw}")
        return None
    return raw
