"""A2A proxy: checks protected JSON-RPC methods (`SendMessage`, `SendStreamingMessage`,
`CancelTask`) with the control plane (`a2a.<agent>.<method_in_snake_case>`) before they reach
the remote agent; a denied request gets a task in `TASK_STATE_REJECTED` carrying the decision."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple, Union

from .client import ControlPlaneClient, decide_fail_closed
from .naming import safe_segment, snake_case

Reply = Union[Dict[str, Any], List[Dict[str, Any]], None]
DownstreamTransport = Callable[[Dict[str, Any]], Reply]
A2AActionMapper = Callable[[str, Dict[str, Any], str], Tuple[str, str]]

#: JSON-RPC "invalid params".
INVALID_PARAMS = -32602
#: How much of a message's text names the resource when nothing else does.
RESOURCE_TEXT_CHARS = 120


class A2AProxyError(RuntimeError):
    """The request is not JSON-RPC 2.0 and cannot be handled safely."""


def _message(params: Dict[str, Any]) -> Dict[str, Any]:
    message = params.get("message")
    return message if isinstance(message, dict) else {}


def _metadata(message: Dict[str, Any]) -> Dict[str, Any]:
    metadata = message.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def extract_resource(params: Dict[str, Any]) -> str:
    """`resource`, `target`, `taskId` or `contextId` from the message metadata, the message or
    the params; else the start of the message's text."""
    message = _message(params)
    metadata = _metadata(message)
    for key in ("resource", "target", "taskId", "contextId"):
        value = metadata.get(key) or message.get(key) or params.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    parts = message.get("parts") or []
    text = "\n".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))
    return text[:RESOURCE_TEXT_CHARS]


def default_a2a_action_mapper(remote_agent: str, params: Dict[str, Any], method: str) -> Tuple[str, str]:
    return f"a2a.{safe_segment(remote_agent)}.{snake_case(method)}", extract_resource(params)


@dataclass
class A2APolicyProxy:
    """Policy-enforcing proxy in front of one remote A2A agent (`downstream` forwards)."""

    downstream: DownstreamTransport
    control_plane: Any = field(default_factory=ControlPlaneClient)
    actor: Optional[str] = None
    remote_agent: str = "remote-agent"
    action_mapper: A2AActionMapper = default_a2a_action_mapper
    protected_methods: FrozenSet[str] = frozenset({"SendMessage", "SendStreamingMessage", "CancelTask"})
    denial_state: str = "TASK_STATE_REJECTED"

    def handle_jsonrpc(self, request: Dict[str, Any]) -> Reply:
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0":
            raise A2AProxyError("A2A request must be a JSON-RPC 2.0 object")
        method = request.get("method")
        if not isinstance(method, str):
            raise A2AProxyError("A2A request method must be a string")
        if request.get("id") is None:
            raise A2AProxyError("A2A request id is required")
        if method not in self.protected_methods:
            return self.downstream(request)
        params = request.get("params")
        if not isinstance(params, dict):
            return {
                "jsonrpc": "2.0",
                "id": request["id"],
                "error": {"code": INVALID_PARAMS, "message": "Invalid parameters"},
            }
        action, resource = self.action_mapper(self.remote_agent, params, method)
        actor = self.actor or _actor_from(params)
        decision = decide_fail_closed(self.control_plane, actor, action, resource, {"source": "a2a", "method": method})
        if decision.get("decision") == "allow" and decision.get("ok") is True:
            return self.downstream(request)
        response = {
            "jsonrpc": "2.0",
            "id": request["id"],
            "result": {"task": self._denied_task(params, dict(decision))},
        }
        return [response] if method == "SendStreamingMessage" else response

    def _denied_task(self, params: Dict[str, Any], decision: Dict[str, Any]) -> Dict[str, Any]:
        message = _message(params)
        task: Dict[str, Any] = {
            "id": message.get("taskId") or params.get("taskId") or f"zt-denied-{uuid.uuid4()}",
            "status": {
                "state": self.denial_state,
                "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                "message": {
                    "role": "ROLE_AGENT",
                    "parts": [{"text": f"Denied by zero-trust policy: {decision.get('reason')}"}],
                    "messageId": f"zt-policy-{uuid.uuid4()}",
                    "metadata": {"zero_trust": decision},
                },
            },
            "metadata": {"zero_trust": decision},
        }
        if message.get("messageId"):
            task["metadata"]["originalMessageId"] = message["messageId"]
        if decision.get("resource"):
            task["metadata"]["resource"] = decision["resource"]
        context_id = message.get("contextId") or params.get("contextId")
        if context_id:
            task["contextId"] = context_id
        if _metadata(message):
            task["history"] = [message]
        return task


def _actor_from(params: Dict[str, Any]) -> str:
    metadata = _metadata(_message(params))
    for key in ("actor", "client", "agent"):
        value = metadata.get(key) or params.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return "a2a-client"
