"""Fault kinds: the envelope validated first, each kind's fields, seeded decisions."""

from __future__ import annotations

import random
from typing import Any

import pytest
from wxgate.faults import BackgroundWindow, FaultSet, parse_fault
from wxgate.faults.delay import Delay
from wxgate.faults.drop import Drop
from wxgate.faults.status import Status
from wxgate.faults.timeout import Timeout


def _parse(data: Any) -> tuple[Any, list[str]]:
    problems: list[str] = []
    fault = parse_fault(data, lambda key, message: problems.append(f"{key}: {message}"))
    return fault, problems


@pytest.mark.parametrize(
    ("data", "cls"),
    [
        ({"match": {"url": "https://api.example.com/slow/*"}, "delay_ms": 3000}, Delay),
        ({"delay_ms": 100, "jitter_ms": 50, "probability": 0.5}, Delay),
        ({"match": {"url": "*/upload/*"}, "timeout": True}, Timeout),
        ({"match": {"api": "request"}, "drop": 0.1}, Drop),
        ({"status": 503, "match": {"method": "POST"}}, Status),
    ],
    ids=["delay", "delay-jitter-probability", "timeout", "drop", "status"],
)
def test_valid_faults_parse_to_their_kind(data: dict[str, Any], cls: type):
    fault, problems = _parse(data)
    assert problems == [] and isinstance(fault, cls)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"delay_ms": 1.5}, "delay_ms: must be an integer"),
        ({"delay_ms": -1}, "delay_ms: must be at least 0"),
        ({"drop": 1.5}, "drop: must be at least 0 and at most 1"),
        ({"status": 42}, "status: must be at least 100"),
        ({"timeout": "yes"}, "timeout: must be true"),
        ({"drop": 0.1, "status": 500}, "exactly one fault kind"),
        ({"match": {"api": "fetch"}, "drop": 0.1}, "match.api: must be one of"),
        ({"match": {"host": "x"}, "drop": 0.1}, "match.host: unknown key"),
        ({"drop": 0.1, "jitter_ms": 5}, "jitter_ms: unknown key 'jitter_ms' for a drop fault"),
        ({"probability": 2, "delay_ms": 1}, "probability: must be at least 0 and at most 1"),
        ({"background": {"appid": "wx0123456789abcdef", "after_s": 1}}, "for_s: is required"),
        ({"match": {"client": "phone-1"}, "drop": 0.1}, "match.client: must be an IP address"),
        ({"background": {"appid": "wx0123456789abcdef", "after_s": 1, "for_s": 1,
                         "client": "10.0.0.0/8"}}, "background.client: must be an IP address"),
        ({"background": {"appid": "wx0123456789abcdef", "after_s": 1, "for_s": 1,
                         "client": 7}}, "background.client: must be a string"),
    ],
    ids=["float-ms", "negative-delay", "drop-above-1", "bad-status", "timeout-not-true",
         "two-kinds", "bad-api", "unknown-match-key", "foreign-field", "bad-probability",
         "background-missing-for", "match-client-not-an-address",
         "background-client-a-network", "background-client-not-a-string"],
)
def test_bad_faults_give_located_problems(data: dict[str, Any], needle: str):
    fault, problems = _parse(data)
    assert fault is None
    assert any(needle in p for p in problems), problems


def test_background_window_parses():
    fault, problems = _parse({"background": {"appid": "wx0123456789abcdef", "after_s": 30,
                                             "for_s": 10}})
    assert problems == [] and fault == BackgroundWindow("wx0123456789abcdef", 30, 10)


def test_background_window_may_name_one_device():
    fault, problems = _parse({"background": {"appid": "wx0123456789abcdef", "after_s": 30,
                                             "for_s": 10, "client": "::ffff:192.168.1.23"}})
    assert problems == []
    assert fault == BackgroundWindow("wx0123456789abcdef", 30, 10, "192.168.1.23")


def _dropped(seed: int, order: list[int]) -> set[int]:
    drop, _ = _parse({"match": {"api": "request"}, "drop": 0.3})
    faults = FaultSet([drop], seed)
    return {i for i in order
            if faults.decide("wx0123456789abcdef", "request", "GET", f"https://a/{i}")}


def test_same_seed_drops_the_same_calls_whatever_the_arrival_order():
    order = list(range(500))
    shuffled = order[:]
    random.Random(1).shuffle(shuffled)
    assert _dropped(7, order) == _dropped(7, shuffled)
    assert _dropped(7, order) != _dropped(8, order)
    assert 100 <= len(_dropped(7, order)) <= 200


def test_match_filters_by_appid_api_method_and_url_glob():
    status, _ = _parse({"match": {"appid": "wxa", "api": "request", "method": "post",
                                  "url": "https://api.example.com/slow/*"}, "status": 500})
    faults = FaultSet([status], 1)
    hit = faults.decide("wxa", "request", "POST", "https://api.example.com/slow/x")
    assert [a.status for _, a in hit] == [500]
    for call in [("wxb", "request", "POST", "https://api.example.com/slow/x"),
                 ("wxa", "uploadFile", "POST", "https://api.example.com/slow/x"),
                 ("wxa", "request", "GET", "https://api.example.com/slow/x"),
                 ("wxa", "request", "POST", "https://api.example.com/fast/x")]:
        assert faults.decide(*call) == []


def test_add_and_remove_at_run_time():
    faults = FaultSet(seed=1)
    delay, _ = _parse({"delay_ms": 10})
    first, second = faults.add(delay), faults.add(delay)
    assert [f["id"] for f in faults.describe()] == [first, second]
    assert faults.remove(first) == 1 and faults.remove(first) == 0
    assert faults.remove() == 1 and faults.describe() == []


def test_match_by_client_applies_to_that_device_only():
    status, problems = _parse({"match": {"client": "192.168.1.23"}, "status": 503})
    assert problems == [] and status.describe()["match"] == {"client": "192.168.1.23"}
    faults = FaultSet([status], 1)
    url = "https://api.example.com/x"
    assert [a.status for _, a in faults.decide("wxa", "request", "GET", url,
                                               "192.168.1.23")] == [503]
    assert faults.decide("wxa", "request", "GET", url, "192.168.1.24") == []
    assert faults.decide("wxa", "request", "GET", url) == []


def test_one_devices_calls_do_not_change_anothers_drops():
    drop, _ = _parse({"match": {"api": "request"}, "drop": 0.5})

    def dropped(other_calls: int) -> list[bool]:
        faults = FaultSet([drop], 3)
        for _ in range(other_calls):
            faults.decide("wxa", "request", "GET", "https://a/same", "10.0.0.2")
        return [bool(faults.decide("wxa", "request", "GET", "https://a/same", "10.0.0.1"))
                for _ in range(40)]

    assert dropped(0) == dropped(25)


def test_a_forgotten_device_starts_its_call_counts_afresh():
    drop, _ = _parse({"match": {"api": "request"}, "drop": 0.5})
    faults = FaultSet([drop], 3)
    first = [bool(faults.decide("wxa", "request", "GET", "https://a/x", "10.0.0.1"))
             for _ in range(20)]
    faults.forget("10.0.0.1")
    again = [bool(faults.decide("wxa", "request", "GET", "https://a/x", "10.0.0.1"))
             for _ in range(20)]
    assert first == again and faults._seen_calls == 1
