"""What the client does with a response body: UTF-8 only, one BOM stripped, and a
status >= 400 still reaching the success callback.

Never blocks: these are warnings and info. With `wxgate_strip_bom` the one BOM the
client strips is stripped here too, so DevTools shows what the phone parses.
"""

from __future__ import annotations

import codecs
import functools

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader

from .policy.rules import Violation
from .raw_headers import header_values
from .state import Runtime
from .verdict import info_of, record

BOM = codecs.BOM_UTF8
_TEXT_TYPES = ("text/", "application/json", "application/javascript", "application/xml",
               "application/x-www-form-urlencoded")


def is_text(content_type: str) -> bool:
    kind = content_type.split(";")[0].strip().lower()
    return kind.startswith(_TEXT_TYPES) or kind.endswith(("+json", "+xml"))


def declared_charset(content_type: str) -> str | None:
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower() or None
    return None


# Content types longer than this are parsed afresh each time, never remembered.
_MAX_REMEMBERED_TYPE = 256


@functools.lru_cache(maxsize=256)
def _remembered_kind(content_type: str) -> tuple[bool, str | None]:
    return is_text(content_type), declared_charset(content_type)


def text_kind(content_type: str) -> tuple[bool, str | None]:
    """(is it text the client decodes, its declared charset): a server sends one or two
    content types, so they are parsed once."""
    if len(content_type) > _MAX_REMEMBERED_TYPE:
        return is_text(content_type), declared_charset(content_type)
    return _remembered_kind(content_type)


def judge_body(status: int, content_type: str, body: bytes) -> list[tuple[str, str]]:
    """(rule, detail) for each response rule the body breaks. Pure."""
    found: list[tuple[str, str]] = []
    if status >= 400:
        found.append(("response.status",
                      f"status {status}: wx.request still calls success, not fail; "
                      "check res.statusCode"))
    text, charset = text_kind(content_type)
    if not text:
        return found
    if charset and charset.replace("-", "").replace("_", "") not in ("utf8",):
        found.append(("response.non_utf8",
                      f"Content-Type declares charset={charset}; the client decodes UTF-8 only"))
    elif not body.isascii():  # ASCII is UTF-8 already, and checked without a copy
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            found.append(("response.non_utf8",
                          f"body is not valid UTF-8 (byte {exc.start}: {exc.reason})"))
    boms = 0
    while body.startswith(BOM, boms * len(BOM)):
        boms += 1
    if boms > 1:
        found.append(("response.bom", f"body starts with {boms} BOMs; the client strips "
                                      "only one, so JSON.parse fails on the rest"))
    return found


class ResponseChecks:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def load(self, loader: Loader) -> None:
        loader.add_option("wxgate_strip_bom", bool, False,
                          "Strip the one leading UTF-8 BOM the client strips.")

    def response(self, flow: http.HTTPFlow) -> None:
        info = info_of(flow)
        response = flow.response
        if (not info.call.in_scope or info.decision == "blocked" or response is None
                or info.call.api != "request" or flow.metadata.get("wxgate_synthetic")):
            return
        content_type, encoding = header_values(
            response.headers.fields, b"content-type", b"content-encoding")
        # No Content-Encoding (the usual case): the body is the raw content, as
        # `get_content` would find after its own lookup of the header.
        body = (response.get_content(strict=False) if encoding is not None
                else response.raw_content) or b""
        content_type = content_type or ""
        for rule, detail in judge_body(response.status_code, content_type, body):
            record(flow, Violation(rule, detail, info.call.api), self.runtime, "reported")
        if body.startswith(BOM) and getattr(ctx.options, "wxgate_strip_bom", False):
            response.set_content(body[len(BOM):])
