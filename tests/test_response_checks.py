"""The response body rules: UTF-8 only, one BOM stripped by the client, status >= 400."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from mitmproxy.test import taddons, tutils
from wxgate import events
from wxgate.identify import IdentifyApp
from wxgate.response_checks import ResponseChecks, declared_charset, is_text, judge_body
from wxgate.verdict import info_of

from .addon_helpers import mp_flow, runtime_for

BOM = codecs.BOM_UTF8


@pytest.mark.parametrize(
    ("status", "ctype", "body", "rules"),
    [
        (200, "application/json; charset=utf-8", b'{"a": 1}', []),
        (200, "application/json", BOM + b"{}", []),
        (200, "application/json", BOM + BOM + b"{}", ["response.bom"]),
        (200, "text/plain; charset=GBK", "你好".encode("gbk"), ["response.non_utf8"]),
        (200, "text/html", "你好".encode("gbk"), ["response.non_utf8"]),
        (200, "text/plain; charset=UTF-8", "你好".encode(), []),
        (200, "application/vnd.api+json", b"\xff", ["response.non_utf8"]),
        (200, "image/png", b"\x89PNG\xff", []),
        (404, "text/plain", b"missing", ["response.status"]),
        (500, "application/json; charset=iso-8859-1", b"{}",
         ["response.status", "response.non_utf8"]),
    ],
    ids=["utf8-json", "one-bom", "two-boms", "declared-gbk", "undeclared-gbk", "utf8-text",
         "json-suffix-bad-bytes", "binary-ignored", "404", "500-latin1"],
)
def test_judge_body(status: int, ctype: str, body: bytes, rules: list[str]):
    assert [rule for rule, _ in judge_body(status, ctype, body)] == rules


def test_charset_and_text_type_parsing():
    assert declared_charset('text/html; charset="GB2312"') == "gb2312"
    assert declared_charset("application/json") is None
    assert is_text("application/problem+json") and not is_text("application/octet-stream")


@pytest.mark.parametrize(("strip", "expected"), [(False, BOM + BOM + b"{}"), (True, BOM + b"{}")])
def test_strip_bom_option_strips_exactly_the_one_bom_the_client_strips(
    tmp_path: Path, strip: bool, expected: bytes,
):
    runtime = runtime_for(tmp_path)
    events.configure("off")
    identify, checks = IdentifyApp(runtime), ResponseChecks(runtime)
    with taddons.context(identify, checks) as tctx:
        tctx.configure(checks, wxgate_strip_bom=strip)
        flow = mp_flow()
        identify.requestheaders(flow)
        flow.response = tutils.tresp(content=BOM + BOM + b"{}")
        flow.response.headers["Content-Type"] = "application/json"
        checks.response(flow)
    assert flow.response.content == expected
    assert "response.bom" in info_of(flow).rules
