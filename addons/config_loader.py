"""Loads the wxgate config into the shared Runtime and keeps mitmproxy set up for it.

The file is watched while the proxy runs: a saved change is loaded at once; a change
with problems is refused and the running policy kept (`config_rejected` says why),
the same as a rejected `--set wxgate_config=...`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Set
from pathlib import Path

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader

from . import events
from .policy.config import Config, ConfigError, load_config
from .state import Runtime

WATCH_INTERVAL_S = 1.0


class ConfigLoader:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._watch: asyncio.Task[None] | None = None

    def load(self, loader: Loader) -> None:
        events.configure()
        loader.add_option("wxgate_config", str, "", "Path of the wxgate YAML config.")
        loader.add_option(
            "wxgate_mode", str, "", "Override the config's mode: enforce or report."
        )

    def configure(self, updated: Set[str]) -> None:
        if "connection_strategy" in updated or "wxgate_config" in updated:
            # eager would contact a blocked upstream on CONNECT, before any hook runs.
            strategy = getattr(ctx.options, "connection_strategy", "lazy")
            if strategy != "lazy":
                ctx.options.update(connection_strategy="lazy")
        if "wxgate_mode" in updated:
            mode = ctx.options.wxgate_mode
            if mode not in ("", "enforce", "report"):
                raise exceptions.OptionsError(
                    f"wxgate_mode must be enforce or report, not {mode!r}"
                )
            self.runtime.mode_override = mode
        if "wxgate_config" in updated and ctx.options.wxgate_config:
            path = ctx.options.wxgate_config
            try:
                config = load_config(path)
            except ConfigError as exc:
                self._reject(path, exc)
                # Raising rolls the option back: the running policy stays as it was.
                raise exceptions.OptionsError(
                    "; ".join(str(p) for p in exc.problems)
                ) from None
            self._install(path, config)

    def _install(self, path: str, config: Config) -> None:
        self.runtime.install(config)
        events.configure(config.log.console, config.log.max_field_bytes)
        events.SINK.open(Path(config.log.path))
        events.logger().info(
            "config_loaded", file=path, mode=self.runtime.mode,
            apps=[a.appid for a in config.apps],
            warnings=[str(w) for w in config.warnings],
        )

    def _reject(self, path: str, exc: ConfigError) -> None:
        events.logger().error(
            "config_rejected", file=path, kept=self.runtime.config.source,
            problems=[str(p) for p in exc.problems],
        )

    def running(self) -> None:
        if self._watch is None and ctx.options.wxgate_config:
            self._watch = asyncio.get_running_loop().create_task(self._watch_file())

    async def _watch_file(self) -> None:
        last = _mtime(ctx.options.wxgate_config)
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            path = ctx.options.wxgate_config
            now = _mtime(path)
            if now == last:
                continue
            last = now
            try:
                self._install(path, load_config(path))
            except ConfigError as exc:
                self._reject(path, exc)

    def done(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        events.logger().info(
            "shutdown", flows=self.runtime.flows, blocked=self.runtime.blocked,
            violations=dict(self.runtime.violations),
        )
        events.SINK.close()


def _mtime(path: str) -> tuple[int, int] | None:
    """Modification time and size: a rewrite within one clock tick still shows."""
    with contextlib.suppress(OSError):
        stat = Path(path).stat()
        return stat.st_mtime_ns, stat.st_size
    return None
