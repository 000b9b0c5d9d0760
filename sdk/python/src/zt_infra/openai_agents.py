"""OpenAI Agents SDK adapter: a tool input guardrail that asks the control plane before each
tool runs, and rejects the call with the reason otherwise. Needs `zt-infra[openai-agents]`.

Actions are `openai.agents.tool.<tool>`, or `openai.agents.tool.<namespace>.<tool>` for a
namespaced tool; the resource comes from the arguments (`declared_resource`).

A call is held to its `FunctionTool`'s `params_json_schema`, found among the running agent's
`tools` by name and namespace (`tool_schema`): an argument the tool does not declare is refused
before any decision (the SDK would drop it silently, after the decision was made on it), unless
`additionalProperties` allows extras; the action mapper gets the declared arguments only. A
tool not found there (one the agent gets from an MCP server, say) keeps the old behaviour:
every argument is read (and the default mapper reads them all as declared).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

from . import strict_json
from .client import ControlPlaneClient, decide_fail_closed
from .decision import Decision, local_deny
from .naming import declared_resource, safe_segment
from .tool_schema import UNKNOWN_SCHEMA, ToolSchema

AgentActorResolver = Callable[[Any], str]
AgentActionMapper = Callable[[str, Dict[str, Any], Any], Tuple[str, str]]

#: The message the model gets instead of the tool's output, before the reason.
DENIED_PREFIX = "denied by the zero-trust control plane: "


def _get(value: Any, path: str) -> Any:
    current = value
    for part in path.split("."):
        if current is None:
            return None
        current = current.get(part) if isinstance(current, dict) else getattr(current, part, None)
    return current


def default_agents_action_mapper(tool_name: str, arguments: Dict[str, Any], data: Any) -> Tuple[str, str]:
    """`openai.agents.tool[.<namespace>].<tool>` and a resource from `arguments`, read as the
    tool's declared arguments (the guardrail passes those only; `declared_resource`): a
    candidate that is not a name decides on `""`."""
    namespace = _get(data, "context.tool_namespace") or ""
    prefix = f"openai.agents.tool.{safe_segment(namespace)}" if namespace else "openai.agents.tool"
    return f"{prefix}.{safe_segment(tool_name)}", declared_resource(arguments)


def default_actor_resolver(data: Any) -> str:
    """The agent's name, else the workflow's, else `openai-agent`."""
    for path in ("agent.name", "context.agent.name", "context.run_config.workflow_name"):
        value = _get(data, path)
        if isinstance(value, str) and value:
            return value
    return "openai-agent"


@dataclass
class AgentsSDKGuardrailPlugin:
    """Tool input guardrail for the OpenAI Agents SDK.

    `deny_behavior="reject_content"` (default) gives the model the reason as the tool's result
    and lets the run continue; `"raise_exception"` halts the run with
    `ToolInputGuardrailTripwireTriggered`. The decision is in `output_info["zero_trust"]` either way.
    """

    control_plane: Any = field(default_factory=ControlPlaneClient)
    actor: Optional[str] = None
    actor_resolver: AgentActorResolver = default_actor_resolver
    action_mapper: AgentActionMapper = default_agents_action_mapper
    deny_behavior: str = "reject_content"
    guardrail_name: str = "zt_policy_tool_guardrail"

    def create_tool_input_guardrail(self) -> Any:
        """An `agents` `ToolInputGuardrail`; pass it in `function_tool(tool_input_guardrails=[...])`."""
        from agents import tool_input_guardrail

        async def zt_policy_tool_guardrail(data: Any) -> Any:
            # The client blocks: keep the event loop free.
            return await asyncio.to_thread(self.evaluate_tool_input, data)

        return tool_input_guardrail(name=self.guardrail_name)(zt_policy_tool_guardrail)

    def function_tool_options(self) -> Dict[str, Any]:
        """Keyword arguments for `function_tool(...)` that install the guardrail."""
        return {"tool_input_guardrails": [self.create_tool_input_guardrail()]}

    def evaluate_tool_input(self, data: Any) -> Any:
        """The guardrail's verdict for one tool call (a `ToolGuardrailFunctionOutput`)."""
        decision = self.decide_for(data)
        from agents import ToolGuardrailFunctionOutput

        info = {"zero_trust": dict(decision)}
        if decision.get("decision") == "allow" and decision.get("ok") is True:
            return ToolGuardrailFunctionOutput.allow(output_info=info)
        if self.deny_behavior == "raise_exception":
            return ToolGuardrailFunctionOutput.raise_exception(output_info=info)
        return ToolGuardrailFunctionOutput.reject_content(f"{DENIED_PREFIX}{decision.get('reason')}", output_info=info)

    def decide_for(self, data: Any) -> Decision:
        """The decision for one tool call; a local deny when the call cannot be read or no
        decision is obtained."""
        tool_name = _get(data, "context.tool_name") or ""
        raw = _get(data, "context.tool_arguments") or "{}"
        actor = self.actor or self.actor_resolver(data)
        if not tool_name:
            return local_deny(actor, "openai.agents.tool.unknown", "", "tool name is required")
        try:
            arguments = strict_json.loads(raw)
        except (TypeError, ValueError):
            return local_deny(
                actor,
                f"openai.agents.tool.{safe_segment(tool_name)}",
                "",
                "tool arguments are not valid JSON, or are ambiguous",
            )
        if not isinstance(arguments, dict):
            return local_deny(
                actor,
                f"openai.agents.tool.{safe_segment(tool_name)}",
                "",
                "tool arguments must decode to a JSON object",
            )
        schema = _tool_schema(data, tool_name)
        refusal = schema.refusal(tool_name, arguments)
        if refusal is not None:
            return local_deny(actor, f"openai.agents.tool.{safe_segment(tool_name)}", "", refusal)
        action, resource = self.action_mapper(tool_name, schema.declared_arguments(arguments), data)
        return decide_fail_closed(
            self.control_plane, actor, action, resource, {"source": "openai-agents", "tool_arguments": arguments}
        )


def _tool_schema(data: Any, tool_name: str) -> ToolSchema:
    """The `params_json_schema` of the agent's function tool this call runs, or `UNKNOWN_SCHEMA`."""
    namespace = _get(data, "context.tool_namespace") or None
    for tool in _get(data, "agent.tools") or []:
        schema = getattr(tool, "params_json_schema", None)
        # The SDK keeps a namespaced tool's namespace there (`agents.tool_namespace`).
        if (
            getattr(tool, "name", None) == tool_name
            and (getattr(tool, "_tool_namespace", None) or None) == namespace
            and isinstance(schema, dict)
        ):
            return ToolSchema.from_json_schema(schema)
    return UNKNOWN_SCHEMA


def guarded_function_tool(
    func: Any,
    plugin: Optional[AgentsSDKGuardrailPlugin] = None,
    *,
    client: Optional[ControlPlaneClient] = None,
    **function_tool_kwargs: Any,
) -> Any:
    """`agents.function_tool(func)` with the control-plane guardrail installed: one line."""
    from agents import function_tool

    guard = plugin if plugin is not None else AgentsSDKGuardrailPlugin(control_plane=client or ControlPlaneClient())
    guardrails = list(function_tool_kwargs.pop("tool_input_guardrails", None) or [])
    guardrails.insert(0, guard.create_tool_input_guardrail())
    return function_tool(func, tool_input_guardrails=guardrails, **function_tool_kwargs)
