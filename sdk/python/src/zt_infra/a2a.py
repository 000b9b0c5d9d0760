"""A2A proxy: every A2A JSON-RPC method, in A2A 1.0 and under its 0.3 name (which an agent
with 0.3 compatibility also serves), is checked with the control plane
(`a2a.<agent>.<method_in_snake_case>`, the 1.0 name's) before it reaches the remote agent, as
`zt a2a-proxy` does (docs/GATEWAYS.md, "A2A proxy"). A method that is not A2A's is refused with
`-32601` and never forwarded, unless listed in `protected_methods` (then it is decided too).

A denied message gets a task in `TASK_STATE_REJECTED` carrying the decision; any other denied
method a JSON-RPC error (`-32090`, or `-32091` when no valid decision was obtained) whose
`data.zero_trust` is the decision."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple, Union

from .client import ControlPlaneClient, decide_fail_closed
from .jsonrpc import INVALID_PARAMS, METHOD_NOT_FOUND, error_response
from .naming import safe_segment, snake_case

Reply = Union[Dict[str, Any], List[Dict[str, Any]], None]
DownstreamTransport = Callable[[Dict[str, Any]], Reply]
A2AActionMapper = Callable[[str, Dict[str, Any], str], Tuple[str, str]]

#: A method other than a message, denied by policy (as `zt a2a-proxy` answers it).
DENIED = -32090
#: A method other than a message, not forwarded for want of a valid decision.
NO_DECISION = -32091
#: How much of a message's text names the resource when nothing else does.
RESOURCE_TEXT_CHARS = 120

#: What a method acts on, read from the one parameter the agent reads for it: `message` (the
#: message's resource, [`extract_resource`]), `id`, `taskId` or `contextId` (that parameter),
#: or `""` (nothing: the extended card).
MESSAGE = "message"

#: Every A2A JSON-RPC method (1.0 and 0.3 wire names), the 1.0 name it is decided under, and
#: its subject. In both generations a task method names its task by `id`; 1.0's
#: push-notification methods name it by `taskId` (their `id` is the config's), as does 0.3's
#: `tasks/pushNotificationConfig/set`.
METHODS: Dict[str, Tuple[str, str]] = {
    "SendMessage": ("SendMessage", MESSAGE),
    "SendStreamingMessage": ("SendStreamingMessage", MESSAGE),
    "GetTask": ("GetTask", "id"),
    "ListTasks": ("ListTasks", "contextId"),
    "CancelTask": ("CancelTask", "id"),
    "SubscribeToTask": ("SubscribeToTask", "id"),
    "CreateTaskPushNotificationConfig": ("CreateTaskPushNotificationConfig", "taskId"),
    "GetTaskPushNotificationConfig": ("GetTaskPushNotificationConfig", "taskId"),
    "ListTaskPushNotificationConfigs": ("ListTaskPushNotificationConfigs", "taskId"),
    "DeleteTaskPushNotificationConfig": ("DeleteTaskPushNotificationConfig", "taskId"),
    "GetExtendedAgentCard": ("GetExtendedAgentCard", ""),
    "message/send": ("SendMessage", MESSAGE),
    "message/stream": ("SendStreamingMessage", MESSAGE),
    "tasks/get": ("GetTask", "id"),
    "tasks/list": ("ListTasks", "contextId"),
    "tasks/cancel": ("CancelTask", "id"),
    "tasks/resubscribe": ("SubscribeToTask", "id"),
    "tasks/pushNotificationConfig/set": ("CreateTaskPushNotificationConfig", "taskId"),
    "tasks/pushNotificationConfig/get": ("GetTaskPushNotificationConfig", "id"),
    "tasks/pushNotificationConfig/list": ("ListTaskPushNotificationConfigs", "id"),
    "tasks/pushNotificationConfig/delete": ("DeleteTaskPushNotificationConfig", "id"),
    "agent/getAuthenticatedExtendedCard": ("GetExtendedAgentCard", ""),
}

#: A2A 0.3 method names and the 1.0 names they are decided under.
V0_3_NAMES: Dict[str, str] = {wire: name for wire, (name, _) in METHODS.items() if wire != name}

#: 1.0 methods whose task is `params.id` (the agent reads no other name for it).
TASK_BY_ID = frozenset(name for wire, (name, subject) in METHODS.items() if wire == name and subject == "id")

#: Parameters that must not appear beside a subject, since another reader could take them for it.
_FOREIGN: Dict[str, Tuple[str, ...]] = {"id": ("taskId",), "contextId": ("id", "taskId")}

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
    """The action under the 1.0 name, and the resource: for a message [`extract_resource`],
    else what the agent acts on, read from the parameter it reads for `method` (a wire name,
    1.0 or 0.3: 0.3's push-notification get/list/delete name their task by `id`, 1.0's by
    `taskId`); a method outside the A2A table is named by [`extract_resource`] too."""
    name, subject = METHODS.get(method, (method, MESSAGE))
    action = f"a2a.{safe_segment(remote_agent)}.{safe_segment(snake_case(name))}"
    if subject == MESSAGE:
        return action, extract_resource(params)
    resource = params.get(subject) if subject else ""
    return action, resource if isinstance(resource, str) else ""


def ambiguous_task(method: str, params: Dict[str, Any]) -> Optional[str]:
    """Why `params` could name to the agent another task (or context) than the one decided on,
    if they could: a proto field name in the params or the message; beside a task method's
    `id`, `taskId`; beside a listing's `contextId`, `id` or `taskId`; a subject that is not a
    string. `method` is a wire name (1.0 or 0.3)."""
    for where in (params, _message(params)):
        for name in PROTO_NAMES:
            if name in where:
                return f"`{name}` is not accepted"
    _, subject = METHODS.get(method, (method, MESSAGE))
    for other in _FOREIGN.get(subject, ()):
        if other in params:
            return f"`{other}` is not a parameter of {method}, which names its subject by `{subject}`"
    if subject not in (MESSAGE, "") and subject in params and not isinstance(params[subject], str):
        return f"`{subject}` must be a string"
    return None


@dataclass
class A2APolicyProxy:
    """Policy-enforcing proxy in front of one remote A2A agent (`downstream` forwards).

    Every A2A method is decided before it is forwarded; any other method is refused
    (`-32601`) unless named in `protected_methods`, which then decides and forwards it too.
    (Before, only the methods in `protected_methods` were decided and every other method was
    forwarded undecided: now naming fewer methods there protects no fewer.)

    The actor is `actor`, else the control plane client's own (else the token's). The
    request's `metadata.actor`/`client`/`agent` (the reference proxy's choice) is read only
    with `actor_from_request=True`: it lets the caller choose whom the decision is for.
    """

    downstream: DownstreamTransport
    control_plane: Any = field(default_factory=ControlPlaneClient)
    actor: Optional[str] = None
    remote_agent: str = "remote-agent"
    action_mapper: A2AActionMapper = default_a2a_action_mapper
    #: Methods decided besides A2A's own (every A2A method, 1.0 and 0.3 names, is decided
    #: whether listed or not); a listed method that is not A2A's is decided and forwarded,
    #: one not listed is refused.
    protected_methods: FrozenSet[str] = frozenset({"SendMessage", "SendStreamingMessage", "CancelTask"})
    denial_state: str = "TASK_STATE_REJECTED"
    actor_from_request: bool = False

    def handle_jsonrpc(self, request: Dict[str, Any]) -> Reply:
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0":
            raise A2AProxyError("A2A request must be a JSON-RPC 2.0 object")
        method = request.get("method")
        if not isinstance(method, str):
            raise A2AProxyError("A2A request method must be a string")
        if request.get("id") is None:
            raise A2AProxyError("A2A request id is required")
        if method not in METHODS and method not in self.protected_methods:
            return error_response(request["id"], f"Method not found: {method[:64]}", METHOD_NOT_FOUND)
        name = METHODS[method][0] if method in METHODS else method
        params = request.get("params", {})
        if not isinstance(params, dict):
            return error_response(request["id"], "Invalid parameters", INVALID_PARAMS)
        why = ambiguous_task(method, params)
        if why is not None:
            return error_response(request["id"], why, INVALID_PARAMS)
        # The default mapper reads the subject by the wire name (0.3 and 1.0 differ for
        # push-notification configs); a caller's mapper gets the 1.0 name, as it always has.
        mapped = method if self.action_mapper is default_a2a_action_mapper else name
        action, resource = self.action_mapper(self.remote_agent, params, mapped)
        actor = self.actor or (_actor_from(params) if self.actor_from_request else None)
        decision = decide_fail_closed(self.control_plane, actor, action, resource, {"source": "a2a", "method": method})
        if decision.get("decision") == "allow" and decision.get("ok") is True:
            return self.downstream(request)
        plain = dict(decision)
        if name not in ("SendMessage", "SendStreamingMessage"):
            # A local deny (no decision obtained) carries its cause in `error`.
            return error_response(
                request["id"],
                f"denied by zero-trust policy: {plain.get('reason')}",
                NO_DECISION if plain.get("error") else DENIED,
                {"zero_trust": plain},
            )
        response = {
            "jsonrpc": "2.0",
            "id": request["id"],
            "result": {"task": self._denied_task(params, plain)},
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
