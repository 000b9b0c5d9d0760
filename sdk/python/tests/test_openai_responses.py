"""OpenAI Responses with the real `openai` client (against a local Responses API stand-in) and
the real control plane: allowed function calls run, denied ones are answered with a
`function_call_output` carrying the denial and its reason."""

from __future__ import annotations

import json
import socket
from typing import Any, Dict, Iterator, List

import pytest

pytest.importorskip("openai")

from fake_openai import FakeResponsesAPI, function_call, message
from openai import OpenAI
from recording_client import RecordingClient
from zt_server import ZtServer

from zt_infra import ControlPlaneClient, ToolRegistry, ZeroTrustResponsesWrapper

ACTOR = "py-responses-agent"


@pytest.fixture(scope="module")
def token(zt: ZtServer) -> str:
    token = zt.register(ACTOR)
    zt.allow("openai.responses.function.lookup_order", "order lookups are read-only")
    zt.allow("openai.responses.function.read_file", "reading is fine")
    zt.allow("openai.responses.function.search", "searching is fine")
    return token


@pytest.fixture(scope="module")
def client(zt: ZtServer, token: str) -> ControlPlaneClient:
    return ControlPlaneClient(zt.url, actor=ACTOR, token=token, timeout=30)


@pytest.fixture
def effects() -> List[str]:
    return []


@pytest.fixture
def tools(effects: List[str]) -> ToolRegistry:
    registry = ToolRegistry()
    registry.register(
        "lookup_order", lambda args: effects.append(f"lookup {args['order_id']}") or {"status": "shipped"}
    )
    registry.register("refund_order", lambda args: effects.append(f"refund {args['order_id']}") or {"refunded": True})
    return registry


def outputs_sent(api: FakeResponsesAPI) -> Dict[str, Dict[str, Any]]:
    found: Dict[str, Dict[str, Any]] = {}
    for request in api.requests:
        for item in request["body"].get("input") or []:
            if isinstance(item, dict) and item.get("type") == "function_call_output":
                found[item["call_id"]] = json.loads(item["output"])
    return found


@pytest.fixture
def api() -> Iterator[FakeResponsesAPI]:
    server = FakeResponsesAPI(
        [
            [
                function_call("lookup_order", {"order_id": "o-1"}, "c1"),
                function_call("refund_order", {"order_id": "o-1"}, "c2"),
            ],
            [message("order o-1 shipped; I may not refund it")],
        ]
    )
    yield server
    server.close()


def test_loop_runs_allowed_calls_and_returns_denials(
    client: ControlPlaneClient, tools: ToolRegistry, effects: List[str], api: FakeResponsesAPI
) -> None:
    openai = OpenAI(base_url=api.base_url, api_key="sk-test", max_retries=0)
    wrapper = ZeroTrustResponsesWrapper(openai, control_plane=client, actor=ACTOR, tools=tools)
    final = wrapper.run(model="scripted", input="check and refund o-1")
    assert final.output_text == "order o-1 shipped; I may not refund it"
    assert effects == ["lookup o-1"]
    sent = outputs_sent(api)
    assert sent["c1"]["ok"] is True and sent["c1"]["result"] == {"status": "shipped"}
    assert sent["c1"]["zero_trust"]["decision"] == "allow"
    denial = sent["c2"]
    assert denial["ok"] is False and denial["result"] is None
    assert denial["zero_trust"]["decision"] == "deny"
    assert denial["zero_trust"]["reason"] == "action is not in the allow list"
    assert set(denial["zero_trust"]["audit"]) == {"timestamp", "previous_hash", "current_hash", "kms_signature"}
    # The second turn carried the conversation: the user's message, both calls, both outputs.
    second = api.requests[1]["body"]["input"]
    assert [item.get("type", "message") for item in second] == [
        "message",
        "function_call",
        "function_call",
        "function_call_output",
        "function_call_output",
    ]


def test_control_plane_down_runs_nothing(tools: ToolRegistry, effects: List[str], api: FakeResponsesAPI) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = ControlPlaneClient(f"http://127.0.0.1:{port}", actor=ACTOR, token="zt_agent_x", timeout=2)
    openai = OpenAI(base_url=api.base_url, api_key="sk-test", max_retries=0)
    ZeroTrustResponsesWrapper(openai, control_plane=down, actor=ACTOR, tools=tools).run(model="scripted", input="go")
    assert effects == []
    sent = outputs_sent(api)
    assert all(not item["ok"] for item in sent.values()) and set(sent) == {"c1", "c2"}
    assert "no decision from the control plane" in sent["c1"]["zero_trust"]["reason"]


def test_malformed_calls_are_refused_without_asking(
    client: ControlPlaneClient, tools: ToolRegistry, effects: List[str]
) -> None:
    wrapper = ZeroTrustResponsesWrapper(None, control_plane=client, actor=ACTOR, tools=tools)
    response = {
        "output": [
            {"type": "function_call", "call_id": "a", "name": "lookup_order", "arguments": "{oops"},
            {"type": "function_call", "call_id": "b", "name": "lookup_order", "arguments": "[1]"},
            {"type": "function_call", "call_id": "c", "name": "", "arguments": "{}"},
            # An allowed function, but two order ids: the tool might read either.
            {
                "type": "function_call",
                "call_id": "d",
                "name": "lookup_order",
                "arguments": '{"order_id": "1", "order_id": "2"}',
            },
        ]
    }
    reasons = [json.loads(o["output"])["zero_trust"]["reason"] for o in wrapper.collect_function_call_outputs(response)]
    assert reasons == [
        "function arguments are not valid JSON, or are ambiguous",
        "function arguments must decode to a JSON object",
        "function name is required",
        "function arguments are not valid JSON, or are ambiguous",
    ]
    assert effects == []


def test_the_loop_is_bounded(client: ControlPlaneClient, tools: ToolRegistry) -> None:
    api = FakeResponsesAPI([[function_call("lookup_order", {"order_id": str(n)}, f"c{n}")] for n in range(3)])
    try:
        openai = OpenAI(base_url=api.base_url, api_key="sk-test", max_retries=0)
        with pytest.raises(RuntimeError, match="no final answer within 2 model turns"):
            ZeroTrustResponsesWrapper(openai, control_plane=client, actor=ACTOR, tools=tools).run(
                model="scripted", input="loop", max_turns=2
            )
    finally:
        api.close()


def test_a_key_error_inside_an_allowed_tool_is_the_tools_not_a_refusal(
    client: ControlPlaneClient, effects: List[str]
) -> None:
    """A `KeyError` raised by the handler after it ran was caught as "not registered", and the
    call reported refused (`ok` false) though its effects had happened."""
    tools = ToolRegistry()

    def lookup_order(args: Dict[str, Any]) -> Any:
        effects.append(f"lookup {args['order_id']}")
        return {"status": {}["missing"]}

    tools.register("lookup_order", lookup_order)
    wrapper = ZeroTrustResponsesWrapper(None, control_plane=client, actor=ACTOR, tools=tools)
    call = {"type": "function_call", "call_id": "k", "name": "lookup_order", "arguments": '{"order_id": "o-9"}'}
    with pytest.raises(KeyError, match="missing"):
        wrapper.collect_function_call_outputs({"output": [call]})
    assert effects == ["lookup o-9"]
    # A tool that is not registered is refused, and the control plane is not asked.
    [output] = ZeroTrustResponsesWrapper(
        None, control_plane=None, actor=ACTOR, tools=ToolRegistry()
    ).collect_function_call_outputs({"output": [call]})
    refusal = json.loads(output["output"])
    assert refusal["ok"] is False and refusal["zero_trust"]["reason"] == "tool is not registered: lookup_order"


def function_tool(name: str, **parameters: Any) -> Dict[str, Any]:
    schema = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"], **parameters}
    return {"type": "function", "name": name, "parameters": schema, "strict": False}


def test_an_argument_the_function_does_not_declare_is_refused_without_asking(zt: ZtServer, token: str) -> None:
    """`read_file` acts on `path`; an added `resource: "harmless"` was what was decided on."""
    recorder = RecordingClient(zt.url, actor=ACTOR, token=token, timeout=30)
    ran: List[Dict[str, Any]] = []
    tools = ToolRegistry()
    for name in ("read_file", "search", "unlisted"):
        tools.register(name, lambda args: ran.append(args) or "done")
    attack = {"path": "/etc/shadow", "resource": "harmless"}
    api = FakeResponsesAPI(
        [
            [
                function_call("read_file", attack, "c1"),
                function_call("read_file", {"path": "notes.txt"}, "c2"),
                function_call("search", {"path": "docs", "resource": "harmless", "limit": 3}, "c3"),
                function_call("unlisted", {"resource": "r1", "path": "p"}, "c4"),
            ],
            [message("done")],
        ]
    )
    try:
        openai = OpenAI(base_url=api.base_url, api_key="sk-test", max_retries=0)
        declared = [
            function_tool("read_file", additionalProperties=False),
            function_tool("search", additionalProperties=True),
        ]
        ZeroTrustResponsesWrapper(openai, control_plane=recorder, actor=ACTOR, tools=tools).run(
            model="scripted", input="go", tools=declared
        )
    finally:
        api.close()
    sent = outputs_sent(api)
    refused = sent["c1"]["zero_trust"]
    assert sent["c1"]["ok"] is False and refused["decision"] == "deny" and refused["audit"] is None
    assert refused["reason"] == "argument `resource` is not declared by tool `read_file`"
    # Declared arguments decide; extras a schema allows run but do not choose the resource; a
    # function the response does not list is read as before (and denied: no policy allows it).
    assert ran == [{"path": "notes.txt"}, {"path": "docs", "resource": "harmless", "limit": 3}]
    assert [(action, resource) for action, resource, _ in recorder.asked] == [
        ("openai.responses.function.read_file", "notes.txt"),
        ("openai.responses.function.search", "docs"),
        ("openai.responses.function.unlisted", "r1"),
    ]
