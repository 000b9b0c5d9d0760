"""OpenAI Responses adapter: runs a response's `function_call` items only when allowed
(`openai.responses.function.<name>`), and answers every call with a `function_call_output`
carrying the result, or the denial and its reason. Needs `zt-infra[openai]`.

A call is held to its function's `parameters` as the response lists them in `response.tools`
(the tools the request declared; `tool_schema`): an argument the function does not declare is
refused before any decision, unless `additionalProperties` allows extras, and the resource is
chosen among the declared arguments only. A function the response does not list (a server that
does not echo `tools`) keeps the old behaviour: every argument is read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from . import strict_json
from .client import ControlPlaneClient, decide_fail_closed
from .decision import local_deny
from .naming import safe_segment
from .tool_schema import UNKNOWN_SCHEMA, ToolSchema

ToolHandler = Callable[[Dict[str, Any]], Any]
ResponseActionMapper = Callable[[str, Dict[str, Any], Any], str]

#: Model turns `run` allows before it stops asking (a loop that never ends is refused).
DEFAULT_MAX_TURNS = 10


def default_response_action_mapper(function_name: str, _arguments: Dict[str, Any], _function_call: Any) -> str:
    return f"openai.responses.function.{safe_segment(function_name)}"


class ToolRegistry:
    """Local functions by name; each takes the decoded arguments object."""

    def __init__(self) -> None:
        self._handlers: Dict[str, ToolHandler] = {}

    def register(self, name: str, handler: Optional[ToolHandler] = None) -> Any:
        """`register("name", fn)`, or `@registry.register("name")`."""
        if not name:
            raise ValueError("tool name is required")

        def decorator(fn: ToolHandler) -> ToolHandler:
            self._handlers[name] = fn
            return fn

        return decorator if handler is None else decorator(handler)

    def handler(self, name: str) -> Optional[ToolHandler]:
        """The function registered as `name`, if any."""
        return self._handlers.get(name)

    def execute(self, name: str, arguments: Dict[str, Any]) -> Any:
        handler = self.handler(name)
        if handler is None:
            raise KeyError(f"tool is not registered: {name}")
        return handler(arguments)


@dataclass
class ZeroTrustResponsesWrapper:
    """Policy-gated function calling over `openai_client.responses`."""

    openai_client: Any
    control_plane: Any = field(default_factory=ControlPlaneClient)
    actor: str = "openai-response-agent"
    tools: ToolRegistry = field(default_factory=ToolRegistry)
    action_mapper: ResponseActionMapper = default_response_action_mapper

    def collect_function_call_outputs(self, response: Any) -> List[Dict[str, Any]]:
        """One `function_call_output` for each `function_call` item of `response`."""
        schemas = _function_schemas(response)
        return [
            self._handle(item, schemas)
            for item in _get(response, "output") or []
            if _get(item, "type") == "function_call"
        ]

    def build_follow_up_input(self, response: Any) -> List[Any]:
        """The response's output items followed by the function call outputs."""
        return [
            *(_as_input(item) for item in _get(response, "output") or []),
            *self.collect_function_call_outputs(response),
        ]

    def continue_response(self, response: Any, *, model: Optional[str] = None, **kwargs: Any) -> Any:
        """Sends the follow-up turn (for server-side state, pass `previous_response_id`)."""
        chosen = model or _get(response, "model")
        if not chosen:
            raise ValueError("model is required to continue a Responses API function-call turn")
        return self.openai_client.responses.create(model=chosen, input=self.build_follow_up_input(response), **kwargs)

    def run(self, *, model: str, input: Any, max_turns: int = DEFAULT_MAX_TURNS, **kwargs: Any) -> Any:
        """The whole loop: create a response, answer its function calls (running only allowed
        ones), send the outputs back with the conversation so far, until a response has no
        function call. Raises `RuntimeError` after `max_turns` model turns."""
        conversation: List[Any] = [{"role": "user", "content": input}] if isinstance(input, str) else list(input)
        for _ in range(max_turns):
            response = self.openai_client.responses.create(model=model, input=conversation, **kwargs)
            outputs = self.collect_function_call_outputs(response)
            if not outputs:
                return response
            conversation.extend(_as_input(item) for item in _get(response, "output") or [])
            conversation.extend(outputs)
        raise RuntimeError(f"no final answer within {max_turns} model turns")

    def _handle(self, call: Any, schemas: Dict[str, ToolSchema]) -> Dict[str, Any]:
        call_id = _get(call, "call_id")
        if not call_id:
            raise ValueError("function call_id is required")
        name = _get(call, "name") or ""
        action = f"openai.responses.function.{safe_segment(name)}"
        if not name:
            return _output(call_id, self._refused("function name is required", action))
        try:
            arguments = strict_json.loads(_get(call, "arguments") or "{}")
        except (TypeError, ValueError):
            return _output(call_id, self._refused("function arguments are not valid JSON, or are ambiguous", action))
        if not isinstance(arguments, dict):
            return _output(call_id, self._refused("function arguments must decode to a JSON object", action))
        # Looked up before the decision: a missing registration is a refusal, while whatever
        # the handler raises once it ran (a `KeyError` included) is the handler's and propagates.
        handler = self.tools.handler(name)
        if handler is None:
            return _output(call_id, self._refused(f"tool is not registered: {name}", action))
        schema = schemas.get(name, UNKNOWN_SCHEMA)
        refusal = schema.refusal(name, arguments)
        if refusal is not None:
            return _output(call_id, self._refused(refusal, action))
        action = self.action_mapper(name, arguments, call)
        decision = decide_fail_closed(
            self.control_plane,
            self.actor,
            action,
            schema.resource(arguments),
            {"source": "openai-responses", "tool_arguments": arguments},
        )
        if not (decision.get("decision") == "allow" and decision.get("ok") is True):
            return _output(call_id, {"ok": False, "zero_trust": dict(decision), "result": None})
        result = handler(arguments)
        return _output(call_id, {"ok": True, "zero_trust": dict(decision), "result": result})

    def _refused(self, reason: str, action: str) -> Dict[str, Any]:
        return {"ok": False, "zero_trust": dict(local_deny(self.actor, action, "", reason)), "result": None}


def _output(call_id: str, payload: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "type": "function_call_output",
        "call_id": call_id,
        "output": json.dumps(payload, sort_keys=True, default=str),
    }


def _function_schemas(response: Any) -> Dict[str, ToolSchema]:
    """The `parameters` of each function tool the response lists, by name."""
    return {
        _get(tool, "name"): ToolSchema.from_json_schema(_get(tool, "parameters"))
        for tool in _get(response, "tools") or []
        if _get(tool, "type") == "function" and isinstance(_get(tool, "name"), str)
    }


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else getattr(value, key, None)


def _as_input(item: Any) -> Any:
    """An output item as an input item (plain JSON, so any client version serializes it)."""
    dump = getattr(item, "model_dump", None)
    return dump(exclude_none=True, mode="json") if callable(dump) else item
