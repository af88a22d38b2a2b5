"""The engines' header sets (tests/engine_headers.yaml) as test cases: one `HeaderSet` per
engine and kind of load, with what the classifier must say about it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

DATA = Path(__file__).with_name("engine_headers.yaml")
WX_APIS = ("wx.request", "uploadFile", "downloadFile", "connectSocket")
MEDIA_KINDS = ("image", "video", "font")


@dataclass(frozen=True)
class HeaderSet:
    engine: str
    kind: str  # wx.request, uploadFile, ..., image, video, font, webview.navigation, ...
    method: str
    url: str
    headers: dict[str, str]
    api: str
    navigation: bool = False
    in_scope: bool = True

    @property
    def id(self) -> str:
        return f"{self.engine}-{self.kind}"

    def param(self) -> Any:
        return pytest.param(self, id=self.id)


@cache
def _raw() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DATA.read_text(encoding="utf-8"))
    return data


def appid() -> str:
    return str(_raw()["appid"])


@cache
def header_sets() -> tuple[HeaderSet, ...]:
    out = []
    for engine, kinds in _raw()["engines"].items():
        for kind, entry in kinds.items():
            expect = entry["expect"]
            out.append(HeaderSet(
                engine, kind, entry["method"], entry["url"],
                {str(k): str(v) for k, v in entry["headers"].items()},
                expect["api"], bool(expect.get("navigation", False)),
                bool(expect.get("in_scope", True)),
            ))
    return tuple(out)


def engines() -> list[str]:
    return list(_raw()["engines"])


def one(engine: str, kind: str) -> HeaderSet:
    for header_set in header_sets():
        if (header_set.engine, header_set.kind) == (engine, kind):
            return header_set
    raise KeyError(f"{engine}/{kind}")


def sets_of(*kinds: str) -> list[HeaderSet]:
    return [s for s in header_sets() if s.kind in kinds]
