"""The drop-in MCP gateway and A2A proxy against the real control plane: a denied request never
reaches the downstream server; an allowed one does."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest
from zt_server import ZtServer

from zt_infra import A2APolicyProxy, ControlPlaneClient, MCPZeroTrustGateway
from zt_infra.mcp import MCPGatewayError

ACTOR = "py-gateway-agent"


@pytest.fixture(scope="module")
def client(zt: ZtServer) -> ControlPlaneClient:
    token = zt.register(ACTOR)
    zt.allow("mcp.github.get_issue", "reading issues is fine")
    zt.allow("a2a.github_agent.get_task", "unused: GetTask is not protected")
    zt.allow("a2a.search_agent.send_message", "the search agent may be asked")
    return ControlPlaneClient(zt.url, actor=ACTOR, token=token, timeout=30)


def test_mcp_gateway(client: ControlPlaneClient) -> None:
    forwarded: List[Dict[str, Any]] = []

    def downstream(message: Dict[str, Any]) -> Dict[str, Any]:
        forwarded.append(message)
        return {"jsonrpc": "2.0", "id": message.get("id"), "result": {"content": []}}

    gateway = MCPZeroTrustGateway(downstream, control_plane=client, actor=ACTOR, server_name="github")
    allowed = gateway.handle_message(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "get_issue", "arguments": {"owner": "o", "repo": "r"}},
        }
    )
    denied = gateway.handle_message(
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "delete_repo", "arguments": {"owner": "o", "repo": "r"}},
        }
    )
    listed = gateway.handle_message({"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
    assert [m["id"] for m in forwarded] == [1, 3]
    assert allowed is not None and "error" not in allowed and listed is not None
    assert denied is not None and denied["result"]["isError"] is True
    decision = denied["result"]["structuredContent"]
    assert decision["decision"] == "deny" and decision["action"] == "mcp.github.delete_repo"
    assert decision["resource"] == "o/r"
    with pytest.raises(MCPGatewayError):
        gateway.handle_message({"id": 4, "method": "tools/call"})


def test_a2a_proxy(client: ControlPlaneClient) -> None:
    forwarded: List[Dict[str, Any]] = []

    def downstream(request: Dict[str, Any]) -> Dict[str, Any]:
        forwarded.append(request)
        return {"jsonrpc": "2.0", "id": request["id"], "result": {"task": {"id": "t1"}}}

    send = {"message": {"messageId": "m1", "parts": [{"text": "open a PR"}]}}
    denied = A2APolicyProxy(downstream, control_plane=client, actor=ACTOR, remote_agent="github_agent").handle_jsonrpc(
        {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": send}
    )
    allowed = A2APolicyProxy(downstream, control_plane=client, actor=ACTOR, remote_agent="search agent").handle_jsonrpc(
        {"jsonrpc": "2.0", "id": 2, "method": "SendMessage", "params": send}
    )
    assert [r["id"] for r in forwarded] == [2] and allowed is not None
    assert isinstance(denied, dict)
    task = denied["result"]["task"]
    assert task["status"]["state"] == "TASK_STATE_REJECTED"
    assert task["metadata"]["zero_trust"]["action"] == "a2a.github_agent.send_message"
    assert task["metadata"]["zero_trust"]["decision"] == "deny"


def test_a2a_proxy_decides_0_3_names_and_the_task_the_agent_acts_on(client: ControlPlaneClient) -> None:
    forwarded: List[Dict[str, Any]] = []

    def downstream(request: Dict[str, Any]) -> Dict[str, Any]:
        forwarded.append(request)
        return {"jsonrpc": "2.0", "id": request["id"], "result": {"task": {"id": "t1"}}}

    proxy = A2APolicyProxy(downstream, control_plane=client, actor=ACTOR, remote_agent="github_agent")
    send = {"message": {"messageId": "m1", "parts": [{"kind": "text", "text": "open a PR"}]}}
    # An agent with A2A 0.3 compatibility serves `message/send` too: decided as `SendMessage`
    # (it was forwarded undecided).
    denied = proxy.handle_jsonrpc({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": send})
    assert isinstance(denied, dict)
    decision = denied["result"]["task"]["metadata"]["zero_trust"]
    assert decision["action"] == "a2a.github_agent.send_message" and decision["decision"] == "deny"
    # A cancel is decided on the task the agent cancels, `params.id`.
    denied = proxy.handle_jsonrpc({"jsonrpc": "2.0", "id": 2, "method": "tasks/cancel", "params": {"id": "prod-task"}})
    assert isinstance(denied, dict)
    decision = denied["result"]["task"]["metadata"]["zero_trust"]
    assert (decision["action"], decision["resource"]) == ("a2a.github_agent.cancel_task", "prod-task")
    # A second name for the task, which the agent ignores, or a proto field name: refused.
    for params in ({"id": "prod-task", "taskId": "scratch"}, {"id": "prod-task", "task_id": "scratch"}):
        refused = proxy.handle_jsonrpc({"jsonrpc": "2.0", "id": 3, "method": "CancelTask", "params": params})
        assert isinstance(refused, dict) and refused["error"]["code"] == -32602, refused
    assert forwarded == []
