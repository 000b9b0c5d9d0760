"""LangGraph adapters: a guarded tool for `ToolNode` graphs, and a policy-gate node with a
router for graphs that branch on the decision. Needs `zt-infra[langgraph]`.

Tool actions are `langgraph.tool.<tool>`; gate nodes ask for the state's action, on the
state's resource or else the node's name.

A guarded tool is held to its argument schema (`tool_schema`): an argument it does not declare
is refused before any decision, unless the schema allows extras (`additionalProperties`, or a
pydantic model with `extra="allow"`), and the resource is chosen among the declared arguments
only. A tool without `args_schema` keeps the old behaviour: every argument is read. Gate nodes
have no tool schema: they read the state as before.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any, Callable, Dict, Mapping, Optional, Union

from .client import ControlPlaneClient
from .decision import Decision, fold_action, local_deny, parse_answer
from .issued import ISSUED
from .naming import safe_segment
from .tool_schema import UNKNOWN_SCHEMA, ToolSchema
from .verify import PinnedKeys

State = Mapping[str, Any]
StateUpdate = Dict[str, Any]
ResourceMapper = Callable[[Dict[str, Any]], str]

#: What a denied tool returns to the model, before the reason.
DENIED_PREFIX = "denied by the zero-trust control plane: "


def denial_message(decision: Mapping[str, Any]) -> str:
    """The tool output the model sees when a call was not run."""
    return f"{DENIED_PREFIX}{decision.get('reason', 'no reason given')}"


def guard_tool(
    tool: Any,
    client: Optional[ControlPlaneClient] = None,
    *,
    action: Optional[str] = None,
    resource: Union[str, ResourceMapper, None] = None,
    actor: Optional[str] = None,
) -> Any:
    """A LangChain tool (or a plain function, made into one) that runs only on allow.

    On deny, or when no decision can be obtained, the tool is not run and returns
    `denied by the zero-trust control plane: <reason>` as its output, so the model learns why.
    The guarded tool keeps the name, description and argument schema of the original, so it
    drops into `ToolNode([...])` and `create_react_agent(model, [...])` unchanged.

    A call with an argument the schema does not declare is refused the same way, without
    asking; a `resource` mapper gets the declared arguments only.
    """
    from langchain_core.tools import BaseTool, StructuredTool
    from langchain_core.tools import tool as make_tool

    original: BaseTool = tool if isinstance(tool, BaseTool) else make_tool(tool)
    cp = client if client is not None else ControlPlaneClient()
    name = original.name
    action_name = action or f"langgraph.tool.{safe_segment(name)}"
    schema = _arguments_schema(original)

    def ask(arguments: Dict[str, Any]) -> Decision:
        refusal = schema.refusal(name, arguments)
        if refusal is not None:
            return local_deny(actor or cp.actor, action_name, "", refusal)
        return cp.decide_or_deny(
            actor,
            action_name,
            _resource(resource, schema, arguments),
            context={"source": "langgraph", "tool": name, "tool_arguments": _jsonable(arguments)},
        )

    def run(**arguments: Any) -> Any:
        decision = ask(arguments)
        if not decision.allowed:
            return denial_message(decision)
        return original.invoke(arguments)

    async def arun(**arguments: Any) -> Any:
        decision = await asyncio.to_thread(ask, arguments)
        if not decision.allowed:
            return denial_message(decision)
        return await original.ainvoke(arguments)

    return StructuredTool.from_function(
        func=run,
        coroutine=arun,
        name=name,
        description=original.description,
        args_schema=original.args_schema,
        return_direct=original.return_direct,
    )


def zt_tool(
    client: Optional[ControlPlaneClient] = None,
    *,
    action: Optional[str] = None,
    resource: Union[str, ResourceMapper, None] = None,
    actor: Optional[str] = None,
) -> Callable[[Any], Any]:
    """Decorator form of `guard_tool`: `@zt_tool(client)` over a function or a `@tool`."""

    def decorate(tool: Any) -> Any:
        return guard_tool(tool, client, action=action, resource=resource, actor=actor)

    return decorate


def create_policy_decision_node(
    client: ControlPlaneClient,
    *,
    actor_key: str = "actor",
    action_key: str = "action",
    resource_key: str = "resource",
    context_key: str = "context",
    output_key: str = "control_plane_decision",
    node_name: str = "policy_gate",
) -> Callable[[State], StateUpdate]:
    """A node that asks about `state[action_key]` and writes the decision to `output_key`.

    The actor is `state[actor_key]` if set, else the client's. The resource is
    `state[resource_key]` if set, else `node_name`; `state[context_key]`, a mapping, is sent as
    the request's context. A missing action, or no decision from the
    control plane, is written as a deny (with the cause as its reason): the graph routes to its
    deny branch rather than failing open or crashing.
    """

    def policy_decision_node(state: State) -> StateUpdate:
        actor = _optional_string(state, actor_key)
        action = _optional_string(state, action_key) or ""
        resource = _optional_string(state, resource_key) or node_name
        context = state.get(context_key) if isinstance(state, Mapping) else None
        return {
            output_key: client.decide_or_deny(
                actor, action, resource, context=_jsonable(context) if isinstance(context, Mapping) else None
            )
        }

    return policy_decision_node


def create_guarded_action_node(
    action_node: Callable[[State], Any],
    *,
    decision_key: str = "control_plane_decision",
    skipped_key: str = "execution_skipped",
    action: Optional[str] = None,
    keys: Optional[PinnedKeys] = None,
) -> Callable[[State], Any]:
    """Wraps a node so it runs only after an explicit, verified allow in `state[decision_key]`;
    otherwise it returns `{skipped_key: True}` without running. Works for sync and async nodes.

    Verified means a `ControlPlaneClient` of this process received and checked that allow, and
    it still names the actor, action and resource it was decided for: an allow written into
    the state by another node, a tool's output or a model, or a real allow relabelled, is
    refused. With `action`, an allow of any other action is refused too.

    A decision restored from a checkpoint written by another process was not received here and
    is refused (fail closed), unless `keys` is given: then an allow whose `audit.current_hash`
    recomputes from its fields and whose signature verifies with those pinned keys is accepted
    as well. A signature proves the control plane decided it, not when: any earlier signed
    allow of the same action passes, so pin the action with `action` too.
    """

    if inspect.iscoroutinefunction(action_node):

        async def guarded_async_node(state: State) -> StateUpdate:
            if not _allowed(state, decision_key, action, keys):
                return {skipped_key: True}
            return _mark_ran(await action_node(state), skipped_key)

        return guarded_async_node

    def guarded_action_node(state: State) -> StateUpdate:
        if not _allowed(state, decision_key, action, keys):
            return {skipped_key: True}
        return _mark_ran(action_node(state), skipped_key)

    return guarded_action_node


def route_by_decision(
    state: State,
    *,
    decision_key: str = "control_plane_decision",
    action: Optional[str] = None,
    keys: Optional[PinnedKeys] = None,
) -> str:
    """Conditional-edge router: `"allow"` only for a verified allow, else `"deny"`.

    Use with `add_conditional_edges("policy_gate", route_by_decision, {"allow": ..., "deny": ...})`
    (`functools.partial(route_by_decision, action=...)` to pin the action). Verified, `action`
    and `keys` mean what they mean for `create_guarded_action_node`: a forged or relabelled
    allow, or one restored from another process's checkpoint without `keys`, routes to deny.
    """
    return "allow" if _allowed(state, decision_key, action, keys) else "deny"


def _allowed(state: State, key: str, action: Optional[str], keys: Optional[PinnedKeys]) -> bool:
    decision = state.get(key) if isinstance(state, Mapping) else None
    if not (isinstance(decision, Mapping) and decision.get("decision") == "allow" and decision.get("ok") is True):
        return False
    # The action compared is the one recorded or verified, not the state's (possibly edited) copy.
    issued = ISSUED.lookup(decision)
    if issued is not None:
        return action is None or issued.action == fold_action(action)
    signed = _signed_allow(decision, keys) if keys is not None else None
    return signed is not None and (action is None or signed.action == fold_action(action))


def _signed_allow(decision: Mapping[str, Any], keys: PinnedKeys) -> Optional[Decision]:
    """`decision` re-checked as a fresh answer (shape, recomputed hash) and signed by `keys`."""
    try:
        parsed = parse_answer(200, json.dumps(decision, allow_nan=False).encode("utf-8"), request_id=None)
        if parsed.audit is None:  # parse_answer guarantees it; kept for the type checker
            return None
        keys.verify(parsed.audit)
    except (RuntimeError, TypeError, ValueError):  # ControlPlaneError, RecursionError, not JSON
        return None
    return parsed


def _mark_ran(update: Any, skipped_key: str) -> StateUpdate:
    result: StateUpdate = dict(update) if isinstance(update, Mapping) else {}
    result.setdefault(skipped_key, False)
    return result


def _optional_string(state: State, key: str) -> Optional[str]:
    value = state.get(key) if isinstance(state, Mapping) else None
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _resource(resource: Union[str, ResourceMapper, None], schema: ToolSchema, arguments: Dict[str, Any]) -> str:
    if callable(resource):
        return str(resource(schema.declared_arguments(arguments)))
    if isinstance(resource, str):
        return resource
    return schema.resource(arguments)


def _arguments_schema(tool: Any) -> ToolSchema:
    """The arguments `tool` runs on. A JSON-schema `args_schema` is read as it is; a pydantic
    model as it validates (its fields, and extras with `extra="allow"`), from the model rather
    than its JSON schema, which an injected argument (a store) cannot be rendered into."""
    args_schema = tool.args_schema
    if isinstance(args_schema, dict):
        return ToolSchema.from_json_schema(args_schema)
    if args_schema is None:
        return UNKNOWN_SCHEMA
    from langchain_core.utils.pydantic import get_fields

    config = getattr(args_schema, "model_config", None)  # pydantic 2; 1 keeps it in `__config__`
    extra = (
        config.get("extra")
        if isinstance(config, dict)
        else getattr(getattr(args_schema, "__config__", None), "extra", None)
    )
    return ToolSchema(frozenset(get_fields(args_schema)), extras_allowed=getattr(extra, "value", extra) == "allow")


def _jsonable(value: Any) -> Any:
    """`value` as plain JSON (non-JSON leaves as their text), for the request's context."""
    try:
        return json.loads(json.dumps(value, default=str, allow_nan=False))
    except (TypeError, ValueError):
        return str(value)
