"""`wxgate ctl`: each action is one control API call; `--client` names one device."""

from __future__ import annotations

import argparse

import pytest
from wxgate import ctl


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="wxgate ctl")
    ctl.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(("argv", "call"), [
    (["background", "wx0123456789abcdef"], ("POST", "/apps/wx0123456789abcdef/background")),
    (["foreground", "wx0123456789abcdef", "--client", "192.168.1.23"],
     ("POST", "/apps/wx0123456789abcdef/foreground?client=192.168.1.23")),
    (["background", "wx0123456789abcdef", "--client", "fe80::1"],
     ("POST", "/apps/wx0123456789abcdef/background?client=fe80%3A%3A1")),
    (["status"], ("GET", "/status")),
])
def test_each_action_is_one_call(argv: list[str], call: tuple[str, str]):
    method, path, _ = ctl._request(_parse(*argv))
    assert (method, path) == call
