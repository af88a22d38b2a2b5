from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
