"""Who may use the proxy and which destinations are the proxy machine itself."""

from __future__ import annotations

import ipaddress

import pytest
from wxgate.policy.config import Config
from wxgate.policy.exposure import (
    client_allowed,
    is_local_ip,
    is_loopback_peer,
    local_destination,
)

DEFAULT = Config().clients


@pytest.mark.parametrize("address, allowed", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("10.1.2.3", True), ("172.16.0.9", True), ("172.31.255.1", True), ("192.168.1.23", True),
    ("fd00::5", True), ("fe80::1%eth0", True),
    ("172.32.0.1", False), ("8.8.8.8", False), ("2001:db8::1", False),
    ("::ffff:8.8.8.8", False), ("", False), ("not-an-ip", False),
])
def test_default_clients_are_loopback_and_private_ranges(address: str, allowed: bool) -> None:
    assert client_allowed(address, DEFAULT) is allowed


def test_clients_can_be_narrowed_to_one_subnet() -> None:
    only = (ipaddress.ip_network("192.168.7.0/24"),)
    assert client_allowed("192.168.7.40", only)
    assert not client_allowed("192.168.8.40", only)
    assert not client_allowed("127.0.0.1", only)


@pytest.mark.parametrize("address, loopback", [
    ("127.0.0.1", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("127.0.0.2", False), ("192.168.1.2", False), ("", False), (None, False),
])
def test_only_the_exact_loopback_peer_is_loopback(address: str | None, loopback: bool) -> None:
    assert is_loopback_peer(address) is loopback


OWN = [ipaddress.ip_address("192.168.1.50")]


@pytest.mark.parametrize("host", [
    "127.0.0.1", "127.0.0.3", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "[::1]", "::1",
    "[::ffff:127.0.0.1]", "localhost", "LOCALHOST.", "admin.localhost", "0.0.0.0", "0",
    "169.254.169.254", "[fe80::1]", "192.168.1.50", "%31%32%37.0.0.1",
])
def test_every_spelling_of_this_machine_is_a_local_destination(host: str) -> None:
    assert local_destination(host, OWN) is not None


@pytest.mark.parametrize("host", ["api.example.com", "192.168.1.51", "8.8.8.8", "[2001:db8::1]"])
def test_other_hosts_are_not_local_destinations(host: str) -> None:
    assert local_destination(host, OWN) is None


def test_mapped_own_address_is_local() -> None:
    assert is_local_ip(ipaddress.ip_address("::ffff:192.168.1.50"), OWN)
