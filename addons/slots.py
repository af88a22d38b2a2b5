"""Counted slots with a FIFO queue: the in-flight and open-socket limits per (device, app).

No mitmproxy import: a holder is any hashable token (the addons use the flow id),
and every release is idempotent, so whichever of response, error, kill or
disconnect comes first frees the slot exactly once. A key with nothing held and nobody
waiting is dropped, so that keys naming devices that come and go leave nothing behind.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class Slots:
    def __init__(self) -> None:
        self._held: dict[Any, set[Any]] = {}
        self._waiting: dict[Any, deque[tuple[Any, asyncio.Future[None]]]] = {}
        self._holder_key: dict[Any, Any] = {}

    def in_use(self, key: Any) -> int:
        return len(self._held.get(key, ()))

    def waiting(self, key: Any) -> int:
        queue = self._waiting.get(key)
        # Every call asks; a key with nobody queued (the usual case) has no queue at all.
        return sum(1 for _, fut in queue if not fut.done()) if queue else 0

    def counts(self) -> dict[Any, int]:
        return {key: len(held) for key, held in self._held.items() if held}

    def holders(self) -> dict[Any, frozenset[Any]]:
        """Who holds a slot, per key: the state a replay compares where it was split."""
        return {key: frozenset(held) for key, held in self._held.items() if held}

    def keys(self) -> set[Any]:
        """Every key with a slot held or a holder waiting."""
        return set(self._held) | set(self._waiting)

    def try_acquire(self, key: Any, holder: Any, limit: int) -> bool:
        """Take a slot now if one is free (and nobody queued before us)."""
        if holder in self._holder_key:
            return True
        if self.in_use(key) >= limit or self.waiting(key):
            return False
        self._take(key, holder)
        return True

    def force_acquire(self, key: Any, holder: Any) -> None:
        """Count a holder beyond the limit (report mode: counted, never held back)."""
        if holder not in self._holder_key:
            self._take(key, holder)

    async def acquire(self, key: Any, holder: Any, limit: int) -> None:
        """Wait in line for a slot; first come, first served."""
        if self.try_acquire(key, holder, limit):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, deque()).append((holder, future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(holder)  # handed a slot in the same tick we were cancelled
            self._leave(key, future)
            raise

    def release(self, holder: Any) -> bool:
        """Free the holder's slot, handing it to the next in line; False if it held none."""
        key = self._holder_key.pop(holder, None)
        if key is None:
            return False
        held = self._held[key]
        held.discard(holder)
        queue = self._waiting.get(key)
        while queue:
            next_holder, future = queue.popleft()
            if not future.done():
                self._take(key, next_holder)
                future.set_result(None)
                break
        if queue is not None and not queue:
            del self._waiting[key]
        if not held:
            del self._held[key]
        return True

    def _leave(self, key: Any, future: asyncio.Future[None]) -> None:
        queue = self._waiting.get(key)
        if queue is None:
            return
        for entry in queue:
            if entry[1] is future:
                queue.remove(entry)
                break
        if not queue:
            del self._waiting[key]

    def _take(self, key: Any, holder: Any) -> None:
        self._held.setdefault(key, set()).add(holder)
        self._holder_key[holder] = key
