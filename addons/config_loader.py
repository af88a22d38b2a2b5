"""Loads the wxgate config into the shared Runtime and keeps mitmproxy set up for it."""

from __future__ import annotations

from collections.abc import Set
from pathlib import Path

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader

from . import events
from .policy.config import ConfigError, load_config
from .state import Runtime


class ConfigLoader:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

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
        if "wxgate_config" in updated:
            path = ctx.options.wxgate_config
            try:
                config = load_config(path) if path else None
            except ConfigError as exc:
                # Raising rolls the option back: the running policy stays as it was.
                events.logger().error(
                    "config_rejected", file=path, problems=[str(p) for p in exc.problems]
                )
                raise exceptions.OptionsError(
                    "; ".join(str(p) for p in exc.problems)
                ) from None
            if config is not None:
                self.runtime.install(config)
                events.configure(config.log.console)
                events.SINK.open(Path(config.log.path))
                events.logger().info(
                    "config_loaded", file=path, mode=self.runtime.mode,
                    apps=[a.appid for a in config.apps],
                )

    def done(self) -> None:
        events.logger().info(
            "shutdown", flows=self.runtime.flows, blocked=self.runtime.blocked,
            violations=dict(self.runtime.violations),
        )
        events.SINK.close()
