"""Which config file a command reads (SPEC §2): `-c`, then `$WXGATE_CONFIG`, then
./wxgate.yaml, then the bundled default. Shared by `run`, `check-config` and `audit`."""

from __future__ import annotations

import os
from pathlib import Path

# Package data: the same file is config/default.yaml in a checkout (a link to this one).
BUNDLED_DEFAULT = Path(__file__).resolve().parent / "default.yaml"


def config_path(given: str | None) -> Path:
    """-c, then $WXGATE_CONFIG, then ./wxgate.yaml, then the bundled default."""
    if given:
        return Path(given)
    if os.environ.get("WXGATE_CONFIG"):
        return Path(os.environ["WXGATE_CONFIG"])
    if Path("wxgate.yaml").is_file():
        return Path("wxgate.yaml")
    return BUNDLED_DEFAULT
