"""An HTTP/2 phone's WebSocket falls back to HTTP/1.1 (mitmproxy offers no WebSocket over
HTTP/2): the socket rules and limits still hold for it while the same phone's calls run as
streams of its HTTP/2 connection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from .harness import (
    SOCKET_REFUSED,
    Certs,
    Proxy,
    base_config,
    open_socket,
    start_proxy,
)
from .test_http2_pool import H2Phone

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def proxy(session_dir: Path, certs: Certs, ws_resolve_map: dict[str, str]
          ) -> Iterator[Proxy]:
    proxy = start_proxy(session_dir / "h2-phone", base_config(ws_resolve_map),
                        certs.ca_file)
    yield proxy
    proxy.stop()


def test_websockets_fall_back_to_http1_beside_the_phones_http2_calls(proxy: Proxy):
    phone = H2Phone(proxy)
    with ExitStack() as stack:
        sockets = [stack.enter_context(open_socket(proxy, "wss://ws.example.com/s"))
                   for _ in range(5)]
        first = phone.call("/hello?h2=with-sockets")
        for i, ws in enumerate(sockets):
            ws.send(f"ping {i}")
            assert ws.recv(timeout=5) == f"ping {i}"
        # The sixth socket of this phone meets the socket limit, over HTTP/1.1 too.
        with pytest.raises(SOCKET_REFUSED):
            stack.enter_context(open_socket(proxy, "wss://ws.example.com/sixth"))
        # A socket to a host that is only on the request list is refused by the socket list.
        with pytest.raises(SOCKET_REFUSED):
            stack.enter_context(open_socket(proxy, "wss://api.example.com/s"))
        outcomes = phone.wait()
    phone.close()
    assert phone.outcomes[first].status == 200 and len(outcomes) == 1
    assert proxy.wait_for_log(lambda e: e.get("rule") == "socket.exceeded", timeout=15)
    refused = proxy.wait_for_log(lambda e: e.get("rule") == "domain.not_listed"
                                 and e.get("api") == "connectSocket")
    assert refused and refused[-1]["host"] == "api.example.com"
