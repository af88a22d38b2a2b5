"""`mitmdump -s` script for the TLS tests: wxgate's own addon list, with TlsAudit put in
after Resolve when the list does not carry it yet (until addons/wxgate.py wires it)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("addons") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from addons import wxgate  # noqa: E402
from addons.resolve import Resolve  # noqa: E402
from addons.tls_audit import TlsAudit  # noqa: E402

addons = list(wxgate.addons)
if not any(isinstance(a, TlsAudit) for a in addons):
    at = next(i for i, a in enumerate(addons) if isinstance(a, Resolve))
    addons.insert(at + 1, TlsAudit(addons[at].runtime))  # type: ignore[attr-defined]
