"""Code written against the reference adapters runs with only its imports changed; the core
imports no framework and no third-party package."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Callable, Dict, List

import pytest
from fake_control_plane import SigningKey, decision_body
from fake_mcp import FakeMCPServer, tool
from zt_server import ZtServer

ACTOR = "py-compat-agent"


@pytest.fixture(scope="module")
def env(zt: ZtServer) -> Dict[str, str]:
    token = zt.register(ACTOR)
    zt.allow("compat.read", "reads are allowed")
    zt.allow("openai.responses.function.read", "reads are allowed")
    return {"url": zt.url, "token": token}


def test_core_import_is_dependency_free() -> None:
    code = (
        "import sys, zt_infra\n"
        "heavy = {'langgraph', 'langchain_core', 'agents', 'openai', 'cryptography', 'httpx', 'requests'}\n"
        "print(sorted(heavy.intersection(m.split('.')[0] for m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_reference_name_is_exported() -> None:
    import zt_infra

    for name in (
        "ControlPlaneClient",
        "ControlPlaneError",
        "create_policy_decision_node",
        "create_guarded_action_node",
        "route_by_decision",
        "ZeroTrustResponsesWrapper",
        "AgentsSDKGuardrailPlugin",
        "MCPZeroTrustGateway",
        "A2APolicyProxy",
        "ToolRegistry",
        "default_agents_action_mapper",
        "default_response_action_mapper",
        "default_mcp_action_mapper",
        "default_a2a_action_mapper",
    ):
        assert callable(getattr(zt_infra, name)), name
        assert name in zt_infra.__all__, name
    assert set(zt_infra._LAZY) <= set(zt_infra.__all__)


def test_reference_client_and_node_shapes(env: Dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # As reference code does it: positional decide(actor, action), dict decisions, default keys.
    monkeypatch.setenv("ZT_TOKEN", env["token"])
    from zt_infra import (
        ControlPlaneClient,
        ControlPlaneError,
        create_guarded_action_node,
        create_policy_decision_node,
        route_by_decision,
    )

    client = ControlPlaneClient(base_url=env["url"], timeout_seconds=30)
    decision = client.decide(ACTOR, "compat.read")
    assert decision["decision"] == "allow" and decision["audit"]["current_hash"]
    assert client.decide(ACTOR, "compat.write", resource="x")["decision"] == "deny"
    with pytest.raises(ControlPlaneError):
        ControlPlaneClient(base_url="http://127.0.0.1:9", timeout_seconds=1).decide(ACTOR, "compat.read")

    ran: List[str] = []
    gate = create_policy_decision_node(client)
    act = create_guarded_action_node(lambda state: ran.append(state["action"]) or {"execution_result": "done"})
    for action in ("compat.read", "compat.write"):
        state: Dict[str, Any] = {"actor": ACTOR, "action": action}
        state.update(gate(state))
        route = route_by_decision(state)
        state.update(act(state))
        assert route == ("allow" if action == "compat.read" else "deny")
        assert state["execution_skipped"] is (action != "compat.read")
    assert ran == ["compat.read"]


def test_reference_responses_wrapper_shape(env: Dict[str, str]) -> None:
    from zt_infra import ControlPlaneClient, ToolRegistry, ZeroTrustResponsesWrapper

    class Responses:
        def __init__(self) -> None:
            self.sent: List[Dict[str, Any]] = []

        def create(self, **kwargs: Any) -> Dict[str, Any]:
            self.sent.append(kwargs)
            return {"model": kwargs["model"], "output": []}

    class OpenAIStandIn:
        responses = Responses()

    tools = ToolRegistry()

    @tools.register("read")
    def read(arguments: Dict[str, Any]) -> str:
        return "content"

    wrapper = ZeroTrustResponsesWrapper(
        openai_client=OpenAIStandIn(),
        control_plane=ControlPlaneClient(base_url=env["url"], token=env["token"], timeout_seconds=30),
        actor=ACTOR,
        tools=tools,
    )
    response = {
        "model": "m",
        "output": [
            {"type": "function_call", "call_id": "c1", "name": "read", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "drop_table", "arguments": "{}"},
        ],
    }
    wrapper.continue_response(response)
    follow_up = OpenAIStandIn.responses.sent[0]["input"]
    outputs = {
        item["call_id"]: json.loads(item["output"]) for item in follow_up if item["type"] == "function_call_output"
    }
    assert outputs["c1"]["result"] == "content" and outputs["c1"]["zero_trust"]["decision"] == "allow"
    assert outputs["c2"]["result"] is None and outputs["c2"]["zero_trust"]["decision"] == "deny"


def test_reference_plugin_options_shape(env: Dict[str, str]) -> None:
    pytest.importorskip("agents")
    from agents import function_tool

    from zt_infra import AgentsSDKGuardrailPlugin, ControlPlaneClient

    plugin = AgentsSDKGuardrailPlugin(
        control_plane=ControlPlaneClient(base_url=env["url"], token=env["token"], timeout_seconds=30), actor=ACTOR
    )

    def read(path: str) -> str:
        """Read."""
        return path

    tool = function_tool(read, **plugin.function_tool_options())
    assert [g.get_name() for g in tool.tool_input_guardrails or []] == ["zt_policy_tool_guardrail"]


class Raising:
    """A reference-style control plane whose decide raises something unexpected."""

    def decide(self, actor: str, action: str, resource: str = "") -> Dict[str, Any]:
        raise KeyError("boom")


def test_foreign_control_plane_failures_fail_closed() -> None:
    from zt_infra import MCPZeroTrustGateway

    server = FakeMCPServer([tool("t", [])])
    gateway = MCPZeroTrustGateway(server, control_plane=Raising(), server_name="s")
    answer = gateway.handle_message({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t"}})
    assert server.forwarded == [] and answer is not None and answer["result"]["isError"] is True


class Answering:
    """A reference-style control plane whose decide returns `answer(actor, action, resource)`."""

    def __init__(self, answer: Callable[[str, str, str], Any]) -> None:
        self.answer = answer

    def decide(self, actor: str, action: str, resource: str = "") -> Any:
        return self.answer(actor, action, resource)


def well_formed(verdict: str, actor: str, action: str, resource: str) -> Dict[str, Any]:
    """A complete answer with evidence and a hash that recomputes, as `zt` gives one."""
    return decision_body(SigningKey(), {"actor": actor, "action": action, "resource": resource}, verdict)


MOCK_ALLOW = {"ok": True, "decision": "allow", "reason": "x"}


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        # The reference mock's answer: no actor, action, resource, audit or evidence.
        (lambda actor, action, resource: dict(MOCK_ALLOW), "`actor` is missing or not a string"),
        (
            lambda actor, action, resource: {**MOCK_ALLOW, "actor": actor, "action": action, "resource": resource},
            "`audit` is missing or not an object",
        ),
        # Genuine in form, but for another action, resource or actor.
        (
            lambda actor, action, resource: well_formed("allow", actor, "mcp.s.other", resource),
            "the answer decides another action than the one asked",
        ),
        (
            lambda actor, action, resource: well_formed("allow", actor, action, "/etc/shadow"),
            "the answer decides another resource than the one asked",
        ),
        (
            lambda actor, action, resource: well_formed("allow", "someone-else", action, resource),
            "the answer decides another actor than the one asked",
        ),
        # Relabelled after hashing: the hash no longer recomputes.
        (
            lambda actor, action, resource: {**well_formed("allow", actor, "mcp.s.other", resource), "action": action},
            "`audit.current_hash` does not match the answer's fields",
        ),
        (lambda actor, action, resource: ["allow"], "the answer is not a decision object"),
        (lambda actor, action, resource: {**MOCK_ALLOW, "reason": float("nan")}, "the answer is not JSON"),
    ],
    ids=["mock", "mock-named", "other-action", "other-resource", "other-actor", "relabelled", "list", "nan"],
)
def test_a_foreign_answer_that_fails_the_clients_checks_is_a_local_deny(answer: Any, why: str) -> None:
    from zt_infra import MCPZeroTrustGateway

    server = FakeMCPServer([tool("t", ["path"])])
    gateway = MCPZeroTrustGateway(server, control_plane=Answering(answer), actor=ACTOR, server_name="s")
    result = gateway.handle_message(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t", "arguments": {"path": "notes"}}}
    )
    assert server.forwarded == [] and result is not None and result["result"]["isError"] is True
    decision = result["result"]["structuredContent"]
    assert decision["decision"] == "deny" and decision["audit"] is None
    assert decision["error"].startswith(f"no decision from the control plane, not run: {why}"), decision


@pytest.mark.parametrize("verdict", ["allow", "deny"])
def test_a_foreign_answer_that_passes_the_checks_is_used(verdict: str) -> None:
    from zt_infra import MCPZeroTrustGateway

    server = FakeMCPServer([tool("t", ["path"])])
    control_plane = Answering(lambda actor, action, resource: well_formed(verdict, actor, action, resource))
    gateway = MCPZeroTrustGateway(server, control_plane=control_plane, actor=ACTOR, server_name="s")
    result = gateway.handle_message(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t", "arguments": {"path": "n"}}}
    )
    assert [m["id"] for m in server.forwarded] == ([1] if verdict == "allow" else [])
    assert result is not None and ("isError" in result["result"]) is (verdict == "deny")
