from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.server import Server, ServerConnection, serve

from .harness import Certs, Upstream, make_certs


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def upstream(certs: Certs) -> Iterator[Upstream]:
    server = Upstream(certs.server_context)
    yield server
    server.close()


@pytest.fixture(scope="session")
def plain_upstream() -> Iterator[Upstream]:
    server = Upstream(None)
    yield server
    server.close()


@pytest.fixture(scope="session")
def resolve_map(upstream: Upstream, plain_upstream: Upstream) -> dict[str, str]:
    """Every test name connects to the local upstream; plain http:// to the plain one."""
    tls_target = f"127.0.0.1:{upstream.port}"
    table = {name: tls_target for name in (
        "api.example.com", "upload.example.com", "cdn.example.com", "ws.example.com",
        "evil.example.net", "api.weixin.qq.com")}
    table["api.example.com:80"] = f"127.0.0.1:{plain_upstream.port}"
    return table


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wxgate")


@pytest.fixture(scope="session")
def ws_upstream(certs: Certs) -> Iterator[Server]:
    """A WSS echo server (the test sockets' upstream)."""
    def echo(conn: ServerConnection) -> None:
        for message in conn:
            conn.send(message)

    server = serve(echo, "127.0.0.1", 0, ssl=certs.server_context)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="session")
def ws_resolve_map(resolve_map: dict[str, str], ws_upstream: Server) -> dict[str, str]:
    """`resolve_map` with ws.example.com (wss:// and ws://) pointed at the echo server."""
    target = f"127.0.0.1:{ws_upstream.socket.getsockname()[1]}"
    return {**resolve_map, "ws.example.com": target, "ws.example.com:80": target}
