"""MCP gateway: checks each JSON-RPC `tools/call` with the control plane (`mcp.<server>.<tool>`)
before passing it to the MCP server; a denied call gets a tool result with `isError: true` and
the decision, and never reaches the server. Other messages pass through.

The gateway reads the server's `tools/list` itself (`mcp_tools`) and holds each call to its
tool's `inputSchema` (`tool_schema`): an argument the tool does not declare is refused with
`-32602` before any decision, unless the schema's `additionalProperties` allows extras, and the
resource is chosen among the declared arguments only."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

from .client import ControlPlaneClient, decide_fail_closed

# Re-exported: these codes were this module's names before `jsonrpc` held them.
from .jsonrpc import INTERNAL_ERROR as INTERNAL_ERROR
from .jsonrpc import INVALID_PARAMS as INVALID_PARAMS
from .jsonrpc import error_response
from .mcp_tools import ServerTools, ToolListError
from .naming import declared_resource, safe_segment

DownstreamTransport = Callable[[Dict[str, Any]], Optional[Dict[str, Any]]]
MCPActionMapper = Callable[[str, str, Dict[str, Any]], Tuple[str, str]]


class MCPGatewayError(RuntimeError):
    """The message is not JSON-RPC 2.0 and cannot be handled safely."""


def default_mcp_action_mapper(server_name: str, tool_name: str, arguments: Dict[str, Any]) -> Tuple[str, str]:
    """`mcp.<server>.<tool>`, and the resource from `arguments`, read as the tool's declared
    arguments (the gateway passes those only; `declared_resource`): a candidate that is not a
    name decides on `""`, as the Rust gateway reads it."""
    return f"mcp.{safe_segment(server_name)}.{safe_segment(tool_name)}", declared_resource(arguments)


@dataclass
class MCPZeroTrustGateway:
    """Policy-enforcing gateway in front of one MCP server (`downstream` sends a message to it
    and returns its answer; the gateway sends its own `tools/list` requests through it too).

    `action_mapper(server, tool, arguments)` gets the arguments the tool declares: extras a
    schema allows reach the decision's context, never the mapper."""

    downstream: DownstreamTransport
    control_plane: Any = field(default_factory=ControlPlaneClient)
    actor: str = "mcp-agent"
    server_name: str = "unknown-server"
    action_mapper: MCPActionMapper = default_mcp_action_mapper
    _tools: ServerTools = field(default_factory=ServerTools, init=False, repr=False, compare=False)

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
            return error_response(request_id, "tools/call params must be an object")
        tool = params.get("name")
        if not isinstance(tool, str) or not tool.strip():
            return error_response(request_id, "tools/call params.name is required")
        # Missing means none; anything else that is not an object (`[]`, `""`, `0`, `false`,
        # `null`) is refused, never decided as `{}` and forwarded as it came.
        arguments = params.get("arguments", {})
        if not isinstance(arguments, dict):
            return error_response(request_id, "tools/call params.arguments must be an object")
        # Held to the tool's schema before any decision: an argument the tool ignores must not
        # steer the decision (a `resource` added to a `write_file` that writes `path`).
        try:
            schema = self._tools.schema(tool, self.downstream, arguments)
        except ToolListError as why:
            return error_response(request_id, f"the server's tool list could not be read: {why}", INTERNAL_ERROR)
        if schema is None:
            return error_response(request_id, f"tool `{tool}` is not in the server's tools/list")
        refusal = schema.refusal(tool, arguments)
        if refusal is not None:
            return error_response(request_id, refusal)
        action, resource = self.action_mapper(self.server_name, tool, schema.declared_arguments(arguments))
        if not action:
            return error_response(request_id, "the action mapper returned an empty action")
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
