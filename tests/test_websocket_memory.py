"""A WebSocket keeps only its last messages in memory (SPEC §8)."""

from __future__ import annotations

from mitmproxy import websocket
from mitmproxy.test import tflow
from wsproto.frame_protocol import Opcode
from wxgate.websocket_memory import KEEP_MESSAGES, WebSocketMemory


def test_a_long_running_socket_keeps_only_its_last_messages():
    flow = tflow.twebsocketflow()
    keeper = WebSocketMemory()
    for i in range(KEEP_MESSAGES * 3):
        assert flow.websocket is not None
        flow.websocket.messages.append(
            websocket.WebSocketMessage(Opcode.TEXT, True, f"m{i}".encode()))
        keeper.websocket_message(flow)
    assert flow.websocket is not None
    kept = flow.websocket.messages
    assert len(kept) == KEEP_MESSAGES
    assert kept[-1].content == f"m{KEEP_MESSAGES * 3 - 1}".encode()
