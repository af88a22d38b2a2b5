"""Keeps only a WebSocket's last messages in memory (SPEC §8).

mitmproxy keeps every message of a flow for its lifetime, so a socket that streams for a
QA session grows without bound. The last `KEEP_MESSAGES` are what mitmweb's message view
shows of a busy socket; older ones are dropped once every other addon has seen them.
"""

from __future__ import annotations

from mitmproxy import http

KEEP_MESSAGES = 100


class WebSocketMemory:
    def websocket_message(self, flow: http.HTTPFlow) -> None:
        if flow.websocket is None:
            return
        messages = flow.websocket.messages
        if len(messages) > KEEP_MESSAGES:
            del messages[: len(messages) - KEEP_MESSAGES]
