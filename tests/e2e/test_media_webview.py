"""What the page loads itself is not wx.request (issue 19), through a real `wxgate run`
and real local HTTPS servers, with each engine's header sets (tests/engine_headers.yaml):

- images, video and fonts, and a web-view page's own calls, to hosts on no list are
  delivered and logged by nothing; a certificate defect on such a host still fails the load
  with its tls.* rule, as on the phone;
- the same host by wx.request is blocked and never contacted;
- a web-view navigation off business_domains, or over http://, is webview.not_listed, and
  `block_with: response` answers it with the client's own "non-business domain" page;
- a WebSocket upgrade named in a token list is a connectSocket, held to the socket list.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..engine_headers import MEDIA_KINDS, HeaderSet, engines, one
from ..tls_chains import Pki
from .harness import Proxy, Reply, Upstream, base_config, send, start_proxy

pytestmark = pytest.mark.e2e

# name -> the defect its certificate has ("good": none)
SERVERS = {
    "img.example.net": "good",          # a CDN on no list
    "h5.example.org": "good",           # the business domain
    "h5api.example.org": "good",        # the web-view page's own API, on no list
    "other.example.org": "good",        # a web page that is not a business domain
    "expired-img.example.net": "expired",
}


@dataclass
class Lab:
    root_file: Path
    servers: dict[str, Upstream]

    def resolve(self) -> dict[str, str]:
        table = {name: f"127.0.0.1:{s.port}" for name, s in self.servers.items()}
        # The wx API hosts point somewhere local too: nothing may leave this machine.
        for name in ("api.example.com", "upload.example.com", "cdn.example.com",
                     "ws.example.com"):
            table[name] = table["img.example.net"]
        return table

    def reached(self, name: str) -> tuple[int, int]:
        """(connections, requests) the server of `name` has seen."""
        return self.servers[name].snapshot()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    directory = tmp_path_factory.mktemp("media-lab")
    pki = Pki()
    servers = {name: Upstream(pki.serve(name, defect).server_context(directory / name))
               for name, defect in SERVERS.items()}
    yield Lab(pki.root_pem(directory / "root.pem"), servers)
    for server in servers.values():
        server.close()


def _config(lab: Lab, **overrides: Any) -> dict[str, Any]:
    config = base_config(lab.resolve(), **overrides)
    config["apps"][0]["business_domains"] = ["https://h5.example.org"]
    return config


def _proxy(tmp_path_factory: pytest.TempPathFactory, lab: Lab, name: str,
           **overrides: Any) -> Iterator[Proxy]:
    proxy = start_proxy(tmp_path_factory.mktemp(name), _config(lab, **overrides),
                        lab.root_file)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def enforcing(tmp_path_factory: pytest.TempPathFactory, lab: Lab) -> Iterator[Proxy]:
    yield from _proxy(tmp_path_factory, lab, "media-enforce")


@pytest.fixture(scope="module")
def answering(tmp_path_factory: pytest.TempPathFactory, lab: Lab) -> Iterator[Proxy]:
    yield from _proxy(tmp_path_factory, lab, "media-response", block_with="response")


def call(proxy: Proxy, header_set: HeaderSet, url: str, wait: float = 0.0
         ) -> tuple[Reply, list[dict[str, Any]]]:
    """One load with the engine's headers; its reply and the violation lines of its URL.
    Lines are written before a call is answered or killed: `wait` only where one is due."""
    body = b"{}" if header_set.method == "POST" else None
    reply = send(proxy, url, header_set.headers, method=header_set.method, body=body)
    lines = proxy.wait_for_log(lambda e: e.get("event") == "violation"
                               and e.get("url") == url, timeout=wait)
    return reply, lines


PAGE_LOADS = [pytest.param(engine, kind, id=f"{engine}-{kind}")
              for engine in engines() for kind in (*MEDIA_KINDS, "webview.xhr")]


@pytest.mark.parametrize(("engine", "kind"), PAGE_LOADS)
def test_media_and_web_view_loads_to_unlisted_hosts_are_delivered_and_logged_by_nothing(
        enforcing: Proxy, lab: Lab, engine: str, kind: str) -> None:
    header_set = one(engine, kind)
    host = "h5api.example.org" if kind == "webview.xhr" else "img.example.net"
    url = f"https://{host}/{engine}/{kind}"
    before = lab.reached(host)[1]

    reply, lines = call(enforcing, header_set, url)

    assert reply.status == 200, reply.error
    assert reply.body == f"hello from upstream /{engine}/{kind}".encode()
    assert lines == []
    assert lab.reached(host)[1] == before + 1


@pytest.mark.parametrize(("engine", "kind"), [
    ("android_xweb", "image"), ("ios_wkwebview", "video"), ("ios_pre_16_4", "image"),
    ("windows_client", "font"), ("devtools", "webview.xhr"),
])
def test_a_certificate_defect_on_a_media_host_still_fails_the_load_with_its_tls_rule(
        enforcing: Proxy, lab: Lab, engine: str, kind: str) -> None:
    header_set = one(engine, kind)
    url = f"https://expired-img.example.net/{engine}/{kind}"

    reply, lines = call(enforcing, header_set, url, wait=2.0)

    assert reply.status is None, reply  # the load fails, as on the phone
    assert [(e["rule"], e["api"], e["action"]) for e in lines] == [
        ("tls.expired", header_set.api, "blocked")]
    assert lab.reached("expired-img.example.net")[1] == 0


@pytest.mark.parametrize("engine", engines())
def test_the_same_host_by_wx_request_is_blocked_and_never_contacted(
        enforcing: Proxy, lab: Lab, engine: str) -> None:
    header_set = one(engine, "wx.request")
    url = f"https://img.example.net/api/{engine}"
    before = lab.reached("img.example.net")

    reply, lines = call(enforcing, header_set, url, wait=2.0)

    assert reply.status is None, reply
    # DevTools' Referer says version "devtools": rewritten to the configured one, as info.
    assert [(e["rule"], e["api"], e["action"], e["errMsg"]) for e in lines
            if e["rule"] != "referer.rewritten"] == [
        ("domain.not_listed", "request", "blocked", "request:fail url not in domain list")]
    assert lab.reached("img.example.net") == before


@pytest.mark.parametrize("engine", engines())
def test_a_web_view_navigation_to_a_business_domain_opens(
        enforcing: Proxy, engine: str) -> None:
    url = f"https://h5.example.org/{engine}/index.html"
    reply, lines = call(enforcing, one(engine, "webview.navigation"), url)
    assert reply.status == 200, reply.error
    assert lines == []


@pytest.mark.parametrize("url", [
    "https://other.example.org/landing", "http://h5.example.org/landing",
], ids=["unlisted", "http"])
@pytest.mark.parametrize("engine", ["android_xweb", "ios_pre_16_4", "devtools"])
def test_a_web_view_navigation_off_business_domains_is_webview_not_listed(
        enforcing: Proxy, lab: Lab, engine: str, url: str) -> None:
    url = url.replace("/landing", f"/landing/{engine}")
    before = lab.reached("other.example.org")

    reply, lines = call(enforcing, one(engine, "webview.navigation"), url, wait=2.0)

    assert reply.status is None, reply
    assert [(e["rule"], e["api"], e["action"], e["errMsg"]) for e in lines] == [
        ("webview.not_listed", "webview", "blocked", None)]
    assert lab.reached("other.example.org") == before


def test_block_with_response_shows_the_non_business_domain_page_naming_the_host(
        answering: Proxy, lab: Lab) -> None:
    url = "https://other.example.org/landing/page"
    before = lab.reached("other.example.org")

    reply, lines = call(answering, one("ios_wkwebview", "webview.navigation"), url, wait=2.0)

    assert reply.status == 403
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    page = reply.body.decode()
    assert "无法打开该页面" in page and "不支持打开非业务域名" in page
    assert "https://other.example.org" in page
    assert [e["rule"] for e in lines] == ["webview.not_listed"]
    assert lab.reached("other.example.org") == before


def test_block_with_response_keeps_the_json_body_for_a_wx_call(
        answering: Proxy, lab: Lab) -> None:
    reply, _ = call(answering, one("windows_client", "wx.request"),
                    "https://img.example.net/api/response", wait=2.0)
    assert reply.status == 403
    assert reply.headers["content-type"].startswith("application/json")
    assert b"request:fail url not in domain list" in reply.body


@pytest.mark.parametrize("upgrade", ["websocket, h2c", "WebSocket"])
def test_a_websocket_named_in_a_token_list_is_held_to_the_socket_list(
        enforcing: Proxy, lab: Lab, upgrade: str) -> None:
    """api.example.com is on the request list only: as connectSocket it is not listed."""
    header_set = one("android_xweb", "connectSocket")
    headers = {**header_set.headers, "Upgrade": upgrade}
    url = f"https://api.example.com/socket/{upgrade.replace(', ', '-')}"
    before = lab.reached("img.example.net")

    reply = send(enforcing, url, headers)
    lines = enforcing.wait_for_log(lambda e: e.get("event") == "violation"
                                   and e.get("url") == url, timeout=2.0)

    assert reply.status is None, reply
    assert [(e["rule"], e["api"]) for e in lines] == [("domain.not_listed", "connectSocket")]
    assert lab.reached("img.example.net") == before
