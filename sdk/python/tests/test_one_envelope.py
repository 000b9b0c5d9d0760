"""One envelope everywhere: the same allowed and denied action through the Python SDK, LangGraph,
the Agents SDK, Responses, the MCP gateway and the A2A proxy gives decisions with identical
field names; the server's log then verifies with `zt audit verify`.

The Rust SDK leg runs `crates/zt-client/examples/decide.rs` (built by `cargo test`, or
`cargo build -p zt-client --example decide`; `ZT_RUST_DECIDE` names another build). Without it
that leg is skipped with a printed reason, unless `ZT_REQUIRE_SERVICES=1`, which fails instead.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest

pytest.importorskip("langgraph")
pytest.importorskip("agents")
pytest.importorskip("openai")

from agents import Agent, Runner, set_tracing_disabled
from fake_mcp import FakeMCPServer, tool
from fake_openai import FakeResponsesAPI, function_call, message
from langgraph.graph import END, START, StateGraph
from openai import OpenAI
from test_langgraph import GateState
from test_openai_agents import ScriptedModel, call, say
from zt_server import REPO_ROOT, ZtServer

from zt_infra import (
    A2APolicyProxy,
    AgentsSDKGuardrailPlugin,
    ControlPlaneClient,
    MCPZeroTrustGateway,
    ToolRegistry,
    ZeroTrustResponsesWrapper,
    create_policy_decision_node,
)
from zt_infra.openai_agents import guarded_function_tool

ACTOR = "envelope-agent"
ALLOWED = "envelope.read"
DENIED = "envelope.delete"
set_tracing_disabled(True)


def rust_decide_binary() -> Path | None:
    configured = os.environ.get("ZT_RUST_DECIDE")
    if configured:
        return Path(configured)
    for build in ("release", "debug"):
        path = REPO_ROOT / "target" / build / "examples" / "decide"
        if path.is_file():
            return path
    return None


def rust_sdk(binary: Path, url: str, token: str) -> Dict[str, Dict[str, Any]]:
    env = {**os.environ, "ZT_CONTROL_PLANE_URL": url, "ZT_ACTOR": ACTOR, "ZT_TOKEN": token}
    found: Dict[str, Dict[str, Any]] = {}
    for verdict, action in (("allow", ALLOWED), ("deny", DENIED)):
        run = subprocess.run(
            [str(binary), action, "r1", json.dumps({"source": "rust"})],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        found[verdict] = json.loads(run.stdout)
    return found


def python_sdk(client: ControlPlaneClient) -> Dict[str, Dict[str, Any]]:
    return {
        verdict: dict(client.decide(action=action, resource="r1", context={"source": "python"}))
        for verdict, action in (("allow", ALLOWED), ("deny", DENIED))
    }


def langgraph(client: ControlPlaneClient) -> Dict[str, Dict[str, Any]]:
    graph = StateGraph(GateState)
    graph.add_node("policy_gate", create_policy_decision_node(client))
    graph.add_edge(START, "policy_gate")
    graph.add_edge("policy_gate", END)
    compiled = graph.compile()
    return {
        verdict: dict(
            compiled.invoke({"actor": ACTOR, "action": action, "context": {"source": "langgraph"}})[
                "control_plane_decision"
            ]
        )
        for verdict, action in (("allow", ALLOWED), ("deny", DENIED))
    }


async def agents_sdk(client: ControlPlaneClient) -> Dict[str, Dict[str, Any]]:
    plugin = AgentsSDKGuardrailPlugin(
        control_plane=client, action_mapper=lambda tool, args, data: (ALLOWED if tool == "read" else DENIED, "r1")
    )

    def read(path: str) -> str:
        """Read."""
        return "ok"

    def delete(path: str) -> str:
        """Delete."""
        return "ok"

    model = ScriptedModel([[call("read", {"path": "p"}, "c1"), call("delete", {"path": "p"}, "c2")], [say("done")]])
    agent = Agent(
        name=ACTOR, model=model, tools=[guarded_function_tool(read, plugin), guarded_function_tool(delete, plugin)]
    )
    result = await Runner.run(agent, "go")
    found = [r.output.output_info["zero_trust"] for r in result.tool_input_guardrail_results]
    return {d["decision"]: d for d in found}


def responses(client: ControlPlaneClient) -> Dict[str, Dict[str, Any]]:
    api = FakeResponsesAPI([[function_call("read", {}, "c1"), function_call("delete", {}, "c2")], [message("done")]])
    try:
        tools = ToolRegistry()
        tools.register("read", lambda args: "ok")
        tools.register("delete", lambda args: "ok")
        wrapper = ZeroTrustResponsesWrapper(
            OpenAI(base_url=api.base_url, api_key="sk-test", max_retries=0),
            control_plane=client,
            actor=ACTOR,
            tools=tools,
            action_mapper=lambda name, args, item: ALLOWED if name == "read" else DENIED,
        )
        wrapper.run(model="scripted", input="go")
        outputs = [
            item for r in api.requests for item in r["body"]["input"] if item.get("type") == "function_call_output"
        ]
        found = [json.loads(item["output"])["zero_trust"] for item in outputs]
        return {d["decision"]: d for d in found}
    finally:
        api.close()


def gateways(client: ControlPlaneClient) -> Dict[str, Dict[str, Any]]:
    mcp = MCPZeroTrustGateway(
        FakeMCPServer([tool("delete", [])]),
        control_plane=client,
        actor=ACTOR,
        action_mapper=lambda s, t, a: (DENIED, "r1"),
    )
    mcp_denial = mcp.handle_message({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "delete"}})
    a2a = A2APolicyProxy(
        lambda r: r, control_plane=client, actor=ACTOR, action_mapper=lambda agent, p, m: (DENIED, "r1")
    )
    a2a_denial = a2a.handle_jsonrpc({"jsonrpc": "2.0", "id": 2, "method": "SendMessage", "params": {"message": {}}})
    assert mcp_denial is not None and isinstance(a2a_denial, dict)
    return {
        "mcp deny": mcp_denial["result"]["structuredContent"],
        "a2a deny": a2a_denial["result"]["task"]["metadata"]["zero_trust"],
    }


def shape(decision: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "fields": sorted(decision),
        "audit": sorted(decision["audit"]),
        "signature": sorted(decision["audit"]["kms_signature"]),
        "evidence": sorted(decision["evidence"]),
    }


async def test_one_envelope_everywhere(fresh_zt: ZtServer) -> None:
    token = fresh_zt.register(ACTOR)
    fresh_zt.allow(ALLOWED, "reading is harmless")
    keys = ControlPlaneClient(fresh_zt.url).audit_keys()
    client = ControlPlaneClient(fresh_zt.url, actor=ACTOR, token=token, pinned_keys=keys, timeout=30)

    paths: Dict[str, Dict[str, Dict[str, Any]]] = {
        "python sdk": python_sdk(client),
        "langgraph": langgraph(client),
        "agents sdk": await agents_sdk(client),
        "responses": responses(client),
    }
    rust = rust_decide_binary()
    if rust is not None:
        paths["rust sdk"] = rust_sdk(rust, fresh_zt.url, token)
    elif os.environ.get("ZT_REQUIRE_SERVICES") == "1":
        pytest.fail("the Rust SDK leg needs target/*/examples/decide (cargo build -p zt-client --example decide)")
    else:
        print("SKIPPED the Rust SDK leg: no target/*/examples/decide (cargo build -p zt-client --example decide)")
    denials = gateways(client)
    seqs: List[int] = []
    for name, by_verdict in paths.items():
        assert set(by_verdict) == {"allow", "deny"}, name
        for verdict, decision in by_verdict.items():
            assert decision["decision"] == verdict and decision["ok"] is (verdict == "allow"), name
            assert decision["action"] == (ALLOWED if verdict == "allow" else DENIED), name
            seqs.append(decision["evidence"]["seq"])
    for verdict in ("allow", "deny"):
        reference = shape(paths["python sdk"][verdict])
        for name, by_verdict in paths.items():
            assert shape(by_verdict[verdict]) == reference, f"{name} {verdict}"
        assert {paths[name][verdict]["reason"] for name in paths} == {paths["python sdk"][verdict]["reason"]}
    for name, decision in denials.items():
        assert shape(decision) == shape(paths["python sdk"]["deny"]), name
        seqs.append(decision["evidence"]["seq"])
    assert len(set(seqs)) == len(seqs) == 2 * len(paths) + len(denials)

    assert fresh_zt.stop() == 0
    verified = fresh_zt.verify_offline()
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("valid: ")
    records = int(verified.stdout.split()[1])
    assert records > max(seqs)
