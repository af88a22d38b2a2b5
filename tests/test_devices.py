"""The device registry: a device is a client address; one with nothing running is forgotten
after the idle time, one with a call running or a background named for it never is."""

from __future__ import annotations

import pytest
from wxgate.devices import Devices, device_of, parse_device


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("peer", "device"), [
    ("192.168.1.23", "192.168.1.23"),
    ("::ffff:192.168.1.23", "192.168.1.23"),
    ("fe80:0:0:0:0:0:0:1%en0", "fe80::1"),
    (None, ""),
])
def test_a_device_is_its_address_however_the_socket_spells_it(peer: str | None, device: str):
    assert device_of(peer) == device


@pytest.mark.parametrize(("text", "device"), [
    ("192.168.1.23", "192.168.1.23"), (" ::1 ", "::1"), ("phone-1", None), ("", None),
    ("192.168.1.0/24", None),
])
def test_a_device_named_by_a_user_must_be_an_address(text: str, device: str | None):
    assert parse_device(text) == device


def test_an_idle_device_is_forgotten_after_ten_minutes_by_default():
    clock = Clock()
    devices = Devices(clock=clock)
    devices.start("192.168.1.23", "wxa", "f1")
    devices.count_violation("192.168.1.23", "domain.not_listed", "error", "blocked")
    devices.end("f1")
    clock.now += 599
    assert devices.sweep() == [] and devices.get("192.168.1.23") is not None
    clock.now += 1
    assert [d.address for d in devices.sweep()] == ["192.168.1.23"]
    assert len(devices) == 0 and devices.forgotten == 1


def test_a_device_with_a_call_running_is_never_forgotten():
    clock = Clock()
    devices = Devices(idle_ms=1000, clock=clock)
    devices.start("192.168.1.23", "wxa", "socket")
    clock.now += 3600
    assert devices.sweep() == []
    devices.end("socket")
    clock.now += 0.5
    assert devices.sweep() == []  # idle from the end of its last call, not its start
    clock.now += 0.5
    assert len(devices.sweep()) == 1


def test_a_device_in_background_by_name_is_kept_until_foreground():
    clock = Clock()
    devices = Devices(idle_ms=1000, clock=clock)
    devices.seen("192.168.1.23", "wxa").background["wxa"] = 0.0
    clock.now += 10
    assert devices.sweep() == []
    device = devices.get("192.168.1.23")
    assert device is not None
    del device.background["wxa"]
    assert len(devices.sweep()) == 1


def test_many_short_lived_addresses_leave_nothing_behind():
    clock = Clock()
    devices = Devices(idle_ms=1000, clock=clock)
    forgotten: list[str] = []
    devices.on_forget = lambda d: forgotten.append(d.address)
    for i in range(5000):
        address = f"10.0.{i // 256}.{i % 256}"
        devices.start(address, "wxa", f"call{i}")
        devices.count_violation(address, "background.blocked", "error", "blocked")
        devices.end(f"call{i}")
        clock.now += 0.01
    clock.now += 1
    devices.sweep()
    assert len(devices) == 0 and devices._call_device == {}
    assert len(forgotten) == 5000 == devices.forgotten


def test_past_the_cap_the_longest_idle_device_makes_room():
    clock = Clock()
    devices = Devices(clock=clock, max_devices=3)
    devices.start("10.0.0.1", "wxa", "busy")
    for address in ("10.0.0.2", "10.0.0.3", "10.0.0.4"):
        clock.now += 1
        devices.seen(address)
    assert [d.address for d in devices] == ["10.0.0.1", "10.0.0.3", "10.0.0.4"]


def test_running_calls_are_listed_per_device_and_app():
    devices = Devices()
    devices.start("10.0.0.1", "wxa", "a1")
    devices.start("10.0.0.1", "wxb", "b1")
    devices.start("10.0.0.2", "wxa", "a2")
    assert sorted(devices.running(appid="wxa")) == ["a1", "a2"]
    assert devices.running("10.0.0.1", "wxa") == ["a1"]
    assert devices.running("10.0.0.9") == []
    device = devices.get("10.0.0.1")
    assert device is not None and device.apps == {"wxa", "wxb"} and device.calls == 2


def test_an_unknown_appid_is_counted_running_but_not_remembered_as_an_app():
    devices = Devices()
    devices.start("10.0.0.1", "wxnotconfigured", "x", remember_app=False)
    device = devices.get("10.0.0.1")
    assert device is not None and device.apps == set() and devices.running() == ["x"]
