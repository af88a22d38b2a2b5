from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Nothing frozen by `StartupHeap` before the test, and nothing left frozen after it:
    a master's `running` freezes the heap of the whole test process."""
    gc.unfreeze()
    yield
    gc.unfreeze()
