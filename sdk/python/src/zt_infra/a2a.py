"""A2A proxy: checks protected JSON-RPC methods (`SendMessage`, `SendStreamingMessage`,
`CancelTask`, and their A2A 0.3 names `message/send`, `message/stream`, `tasks/cancel`, which an
agent with 0.3 compatibility also serves) with the control plane
(`a2a.<agent>.<method_in_snake_case>`, the 1.0 name's) before they reach the remote agent; a
denied request gets a task in `TASK_STATE_REJECTED` carrying the decision."""

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

#: A2A 0.3 method names and the 1.0 names they are decided under.
V0_3_NAMES: Dict[str, str] = {
    "message/send": "SendMessage",
    "message/stream": "SendStreamingMessage",
    "tasks/cancel": "CancelTask",
    "tasks/get": "GetTask",
    "tasks/resubscribe": "SubscribeToTask",
}

#: Methods whose task is `params.id` (the agent reads no other name for it).
TASK_BY_ID = frozenset({"CancelTask", "GetTask", "SubscribeToTask"})

#: Proto field names, which protobuf's JSON reader (the 1.0 SDK's) takes like the JSON names.
PROTO_NAMES = ("task_id", "context_id")


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
    """The action under the 1.0 name, and the resource: for a task method the task it acts on
    (`params.id`), else [`extract_resource`]."""
    resource = params.get("id") if method in TASK_BY_ID else extract_resource(params)
    return f"a2a.{safe_segment(remote_agent)}.{snake_case(method)}", resource if isinstance(resource, str) else ""


def ambiguous_task(method: str, params: Dict[str, Any]) -> Optional[str]:
    """Why `params` could name to the agent another task than the one decided on, if they could:
    a proto field name in the params or the message, or `taskId` beside a task method's `id`."""
    for where in (params, _message(params)):
        for name in PROTO_NAMES:
            if name in where:
                return f"`{name}` is not accepted"
    if method in TASK_BY_ID and "taskId" in params:
        return f"`taskId` is not a parameter of {method}, which names its task by `id`"
    return None


@dataclass
class A2APolicyProxy:
    """Policy-enforcing proxy in front of one remote A2A agent (`downstream` forwards)."""

    downstream: DownstreamTransport
    control_plane: Any = field(default_factory=ControlPlaneClient)
    actor: Optional[str] = None
    remote_agent: str = "remote-agent"
    action_mapper: A2AActionMapper = default_a2a_action_mapper
    #: Under their 1.0 names; the 0.3 names of the same methods are protected alike.
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
        name = V0_3_NAMES.get(method, method)
        if name not in self.protected_methods:
            return self.downstream(request)
        params = request.get("params")
        why = ambiguous_task(name, params) if isinstance(params, dict) else "Invalid parameters"
        if not isinstance(params, dict) or why is not None:
            return {
                "jsonrpc": "2.0",
                "id": request["id"],
                "error": {"code": INVALID_PARAMS, "message": why or "Invalid parameters"},
            }
        action, resource = self.action_mapper(self.remote_agent, params, name)
        actor = self.actor or _actor_from(params)
        decision = decide_fail_closed(self.control_plane, actor, action, resource, {"source": "a2a", "method": method})
        if decision.get("decision") == "allow" and decision.get("ok") is True:
            return self.downstream(request)
        response = {
            "jsonrpc": "2.0",
            "id": request["id"],
            "result": {"task": self._denied_task(params, dict(decision))},
        }
        return [response] if name == "SendStreamingMessage" else response

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
