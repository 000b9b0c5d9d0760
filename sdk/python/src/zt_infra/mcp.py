"""MCP gateway: checks each JSON-RPC `tools/call` with the control plane (`mcp.<server>.<tool>`)
before passing it to the MCP server; a denied call gets a tool result with `isError: true` and
the decision, and never reaches the server. Other messages pass through."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

from .client import ControlPlaneClient, decide_fail_closed
from .naming import extract_resource, safe_segment

DownstreamTransport = Callable[[Dict[str, Any]], Optional[Dict[str, Any]]]
MCPActionMapper = Callable[[str, str, Dict[str, Any]], Tuple[str, str]]

#: JSON-RPC "invalid params".
INVALID_PARAMS = -32602


class MCPGatewayError(RuntimeError):
    """The message is not JSON-RPC 2.0 and cannot be handled safely."""


def default_mcp_action_mapper(server_name: str, tool_name: str, arguments: Dict[str, Any]) -> Tuple[str, str]:
    return f"mcp.{safe_segment(server_name)}.{safe_segment(tool_name)}", extract_resource(arguments)


@dataclass
class MCPZeroTrustGateway:
    """Policy-enforcing gateway in front of one MCP server (`downstream` sends a message to it)."""

    downstream: DownstreamTransport
    control_plane: Any = field(default_factory=ControlPlaneClient)
    actor: str = "mcp-agent"
    server_name: str = "unknown-server"
    action_mapper: MCPActionMapper = default_mcp_action_mapper

    def handle_message(self, message: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            raise MCPGatewayError("MCP message must be a JSON-RPC 2.0 object")
        if "method" in message and not isinstance(message.get("method"), str):
            raise MCPGatewayError("MCP method must be a string")
        if message.get("method") != "tools/call":
            return self.downstream(message)
        request_id = message.get("id")
        if request_id is None:
            # A tools/call notification has no answer to carry a denial: never forwarded.
            return None
        params = message.get("params")
        if not isinstance(params, dict):
            return _error(request_id, "tools/call params must be an object")
        tool = params.get("name")
        if not isinstance(tool, str) or not tool.strip():
            return _error(request_id, "tools/call params.name is required")
        # Missing means none; anything else that is not an object (`[]`, `""`, `0`, `false`,
        # `null`) is refused, never decided as `{}` and forwarded as it came.
        arguments = params.get("arguments", {})
        if not isinstance(arguments, dict):
            return _error(request_id, "tools/call params.arguments must be an object")
        action, resource = self.action_mapper(self.server_name, tool, arguments)
        if not action:
            return _error(request_id, "the action mapper returned an empty action")
        decision = decide_fail_closed(
            self.control_plane, self.actor, action, resource, {"source": "mcp", "tool_arguments": arguments}
        )
        if decision.get("decision") == "allow" and decision.get("ok") is True:
            return self.downstream(message)
        plain = dict(decision)
        return {
            "jsonrpc": "2.0",
            "id": request_id,
            "result": {
                "content": [{"type": "text", "text": json.dumps(plain, sort_keys=True)}],
                "structuredContent": plain,
                "isError": True,
            },
        }


def _error(request_id: Any, message: str) -> Dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": INVALID_PARAMS, "message": message}}
