"""A real MCP server over stdio, one of the npm peers `scripts/setup-peers.sh` installs in
`tests/mcp-peers`, driven as the gateway's `downstream`: one JSON-RPC message in, its answer out."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from zt_server import REPO_ROOT

PEERS_BIN = REPO_ROOT / "tests" / "mcp-peers" / "node_modules" / ".bin"
#: Seconds a server gets to answer one request.
ANSWER_TIMEOUT = 30.0


def peer_or_skip(name: str) -> Path:
    """The installed peer's command; a skip (a failure under `ZT_REQUIRE_SERVICES=1`) without it."""
    command = PEERS_BIN / name
    if not command.exists():
        why = f"{command} is not installed: run scripts/setup-peers.sh"
        if os.environ.get("ZT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"ZT_REQUIRE_SERVICES=1 but {why}")
        pytest.skip(why)
    return command


class StdioServer:
    """The server process, initialized; calling it sends a message and returns the answer."""

    def __init__(self, command: List[str]) -> None:
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self._lines: "queue.Queue[str]" = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        #: Every message the server received, the handshake excepted.
        self.received: List[Dict[str, Any]] = []
        self._send(
            {
                "jsonrpc": "2.0",
                "id": "init",
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "zt-sdk-tests", "version": "0"},
                },
            }
        )
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def __call__(self, message: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        self.received.append(message)
        return self._send(message)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()

    def _send(self, message: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        if "id" not in message:
            return None
        while True:  # notifications and the server's own requests are not the answer
            answer = json.loads(self._lines.get(timeout=ANSWER_TIMEOUT))
            if answer.get("id") == message["id"] and ("result" in answer or "error" in answer):
                return dict(answer)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
