"""LangGraph with the real package and the real control plane: a tool graph (`ToolNode`) and a
policy-gate graph run end to end with a scripted chat model (no network)."""

from __future__ import annotations

import operator
import socket
from typing import Annotated, Any, Dict, List, TypedDict

import pytest

pytest.importorskip("langgraph")

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, create_react_agent, tools_condition
from zt_server import ZtServer

from zt_infra import ControlPlaneClient, create_guarded_action_node, create_policy_decision_node, route_by_decision
from zt_infra.langgraph import DENIED_PREFIX, guard_tool

ACTOR = "py-langgraph-agent"


@pytest.fixture(scope="module")
def client(zt: ZtServer) -> ControlPlaneClient:
    token = zt.register(ACTOR)
    zt.allow("langgraph.tool.read_file", "reading files is allowed")
    zt.allow("langgraph.report", "reports are allowed")
    return ControlPlaneClient(zt.url, actor=ACTOR, token=token, timeout=30)


def down_client() -> ControlPlaneClient:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return ControlPlaneClient(f"http://127.0.0.1:{port}", actor=ACTOR, token="zt_agent_x", timeout=2)


class ScriptedModel(GenericFakeChatModel):
    """A chat model that replays scripted messages; `bind_tools` is a no-op, as the script
    already says which tools to call."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self


def scripted(*calls: Dict[str, Any]) -> ScriptedModel:
    messages = [AIMessage(content="", tool_calls=[call]) for call in calls] + [AIMessage(content="finished")]
    return ScriptedModel(messages=iter(messages))


def tool_graph(model: ScriptedModel, tools: List[Any]) -> Any:
    graph = StateGraph(MessagesState)
    graph.add_node("agent", lambda state: {"messages": [model.invoke(state["messages"])]})
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile()


def make_tools(effects: List[str]) -> List[Any]:
    @tool
    def read_file(path: str) -> str:
        """Read a file."""
        effects.append(f"read {path}")
        return f"contents of {path}"

    @tool
    def delete_file(path: str) -> str:
        """Delete a file."""
        effects.append(f"deleted {path}")
        return "deleted"

    return [read_file, delete_file]


def tool_messages(state: Dict[str, Any]) -> Dict[str, str]:
    return {m.name: m.content for m in state["messages"] if isinstance(m, ToolMessage)}


def test_tool_node_graph_runs_allowed_and_refuses_denied(client: ControlPlaneClient) -> None:
    effects: List[str] = []
    tools = [guard_tool(t, client) for t in make_tools(effects)]
    model = scripted(
        {"name": "read_file", "args": {"path": "/tmp/a"}, "id": "c1"},
        {"name": "delete_file", "args": {"path": "/tmp/a"}, "id": "c2"},
    )
    final = tool_graph(model, tools).invoke({"messages": [HumanMessage("tidy up")]})
    assert effects == ["read /tmp/a"]
    outputs = tool_messages(final)
    assert outputs["read_file"] == "contents of /tmp/a"
    assert outputs["delete_file"] == f"{DENIED_PREFIX}action is not in the allow list"
    assert final["messages"][-1].content == "finished"


async def test_tool_node_graph_async(client: ControlPlaneClient) -> None:
    effects: List[str] = []
    tools = [guard_tool(t, client) for t in make_tools(effects)]
    model = scripted(
        {"name": "delete_file", "args": {"path": "/x"}, "id": "c1"},
        {"name": "read_file", "args": {"path": "/y"}, "id": "c2"},
    )
    final = await tool_graph(model, tools).ainvoke({"messages": [HumanMessage("go")]})
    assert effects == ["read /y"]
    assert tool_messages(final)["delete_file"].startswith(DENIED_PREFIX)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_create_react_agent_with_guarded_tools(client: ControlPlaneClient) -> None:
    effects: List[str] = []
    tools = [guard_tool(t, client) for t in make_tools(effects)]
    model = scripted({"name": "delete_file", "args": {"path": "/etc"}, "id": "c1"})
    agent = create_react_agent(model, tools)
    final = agent.invoke({"messages": [HumanMessage("delete /etc")]})
    assert effects == []
    assert tool_messages(final)["delete_file"] == f"{DENIED_PREFIX}action is not in the allow list"


def test_control_plane_down_fails_closed_in_the_tool_graph() -> None:
    effects: List[str] = []
    tools = [guard_tool(t, down_client()) for t in make_tools(effects)]
    model = scripted({"name": "read_file", "args": {"path": "/tmp/a"}, "id": "c1"})
    final = tool_graph(model, tools).invoke({"messages": [HumanMessage("read")]})
    assert effects == []
    output = tool_messages(final)["read_file"]
    assert output.startswith(DENIED_PREFIX) and "unreachable" in output


class GateState(TypedDict, total=False):
    actor: str
    action: str
    resource: str
    context: Dict[str, Any]
    control_plane_decision: Dict[str, Any]
    execution_skipped: bool
    effects: Annotated[List[str], operator.add]
    notified: bool


def gate_graph(client: ControlPlaneClient) -> Any:
    def act(state: GateState) -> Dict[str, Any]:
        return {"effects": [f"did {state['action']}"]}

    def notify(state: GateState) -> Dict[str, Any]:
        return {"notified": True}

    graph = StateGraph(GateState)
    graph.add_node("policy_gate", create_policy_decision_node(client))
    graph.add_node("act", create_guarded_action_node(act))
    graph.add_node("notify_denied", notify)
    graph.add_edge(START, "policy_gate")
    graph.add_conditional_edges("policy_gate", route_by_decision, {"allow": "act", "deny": "notify_denied"})
    graph.add_edge("act", END)
    graph.add_edge("notify_denied", END)
    return graph.compile()


def test_policy_gate_branches_on_the_decision(client: ControlPlaneClient) -> None:
    graph = gate_graph(client)
    allowed = graph.invoke({"actor": ACTOR, "action": "langgraph.report", "resource": "q3", "effects": []})
    denied = graph.invoke({"actor": ACTOR, "action": "aws.ec2.terminate_instances", "effects": []})
    assert allowed["effects"] == ["did langgraph.report"] and allowed["execution_skipped"] is False
    assert allowed["control_plane_decision"]["decision"] == "allow"
    assert denied["effects"] == [] and denied.get("notified") is True
    decision = denied["control_plane_decision"]
    assert decision["decision"] == "deny" and decision["resource"] == "policy_gate"
    assert "terminat" in decision["reason"].lower()


def test_policy_gate_with_the_control_plane_down_takes_the_deny_branch() -> None:
    final = gate_graph(down_client()).invoke({"actor": ACTOR, "action": "langgraph.report", "effects": []})
    assert final["effects"] == [] and final.get("notified") is True
    assert final["control_plane_decision"]["decision"] == "deny"


def test_guarded_node_refuses_a_forged_or_missing_decision() -> None:
    ran: List[int] = []
    node = create_guarded_action_node(lambda state: ran.append(1) or {})
    assert node({}) == {"execution_skipped": True}
    assert node({"control_plane_decision": {"decision": "allow", "ok": False}}) == {"execution_skipped": True}
    assert node({"control_plane_decision": {"decision": "Allow", "ok": True}}) == {"execution_skipped": True}
    assert route_by_decision({"control_plane_decision": "allow"}) == "deny"
    assert ran == []
