"""OpenAI Agents SDK with the real package and the real control plane: `Runner.run` drives a
scripted model (no network); the guardrail runs allowed tools and rejects denied ones."""

from __future__ import annotations

import json
import socket
from typing import Any, AsyncIterator, Dict, List

import pytest

pytest.importorskip("agents")

from agents import (
    Agent,
    FunctionTool,
    Runner,
    ToolInputGuardrailTripwireTriggered,
    Usage,
    set_tracing_disabled,
)
from agents.items import ModelResponse
from agents.models.interface import Model
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText
from recording_client import RecordingClient
from zt_server import ZtServer

from zt_infra import AgentsSDKGuardrailPlugin, ControlPlaneClient
from zt_infra.openai_agents import DENIED_PREFIX, guarded_function_tool

AGENT = "py-agents-sdk-agent"
set_tracing_disabled(True)


class ScriptedModel(Model):
    """Returns one scripted turn per call and records what it was sent."""

    def __init__(self, turns: List[List[Any]]) -> None:
        self.turns = list(turns)
        self.inputs: List[Any] = []

    async def get_response(self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any) -> ModelResponse:
        self.inputs.append(input)
        return ModelResponse(output=self.turns.pop(0), usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError


def call(name: str, arguments: Dict[str, Any], call_id: str) -> ResponseFunctionToolCall:
    return ResponseFunctionToolCall(
        type="function_call", call_id=call_id, name=name, arguments=json.dumps(arguments), id=call_id
    )


def say(text: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id="m1",
        role="assistant",
        status="completed",
        type="message",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


def tool_outputs(model: ScriptedModel) -> Dict[str, str]:
    outputs: Dict[str, str] = {}
    for sent in model.inputs:
        for item in sent if isinstance(sent, list) else []:
            if isinstance(item, dict) and item.get("type") == "function_call_output":
                outputs[item["call_id"]] = str(item["output"])
    return outputs


@pytest.fixture(scope="module")
def token(zt: ZtServer) -> str:
    token = zt.register(AGENT)
    zt.allow("openai.agents.tool.get_weather", "weather is public")
    zt.allow("openai.agents.tool.read_file", "reading is fine")
    zt.allow("openai.agents.tool.search", "searching is fine")
    return token


@pytest.fixture(scope="module")
def client(zt: ZtServer, token: str) -> ControlPlaneClient:
    return ControlPlaneClient(zt.url, actor=AGENT, token=token, timeout=30)


def make_tools(effects: List[str], plugin: AgentsSDKGuardrailPlugin) -> List[Any]:
    def get_weather(city: str) -> str:
        """Weather in a city."""
        effects.append(f"weather {city}")
        return f"sunny in {city}"

    def wire_money(account: str, amount: int) -> str:
        """Send money."""
        effects.append(f"wired {amount} to {account}")
        return "sent"

    return [guarded_function_tool(get_weather, plugin), guarded_function_tool(wire_money, plugin)]


async def test_runner_runs_allowed_tools_and_rejects_denied(client: ControlPlaneClient) -> None:
    effects: List[str] = []
    plugin = AgentsSDKGuardrailPlugin(control_plane=client)
    model = ScriptedModel(
        [
            [
                call("get_weather", {"city": "Paris"}, "c1"),
                call("wire_money", {"account": "evil", "amount": 100}, "c2"),
            ],
            [say("done")],
        ]
    )
    agent = Agent(name=AGENT, instructions="help", model=model, tools=make_tools(effects, plugin))
    result = await Runner.run(agent, "weather, then pay")
    assert result.final_output == "done"
    assert effects == ["weather Paris"]
    outputs = tool_outputs(model)
    assert outputs["c1"] == "sunny in Paris"
    assert outputs["c2"] == f"{DENIED_PREFIX}action is not in the allow list"


async def test_raise_exception_behaviour_halts_the_run(client: ControlPlaneClient) -> None:
    effects: List[str] = []
    plugin = AgentsSDKGuardrailPlugin(control_plane=client, deny_behavior="raise_exception")
    model = ScriptedModel([[call("wire_money", {"account": "evil", "amount": 1}, "c1")], [say("never")]])
    agent = Agent(name=AGENT, instructions="help", model=model, tools=make_tools(effects, plugin))
    with pytest.raises(ToolInputGuardrailTripwireTriggered):
        await Runner.run(agent, "pay")
    assert effects == []


async def test_control_plane_down_rejects(client: ControlPlaneClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = ControlPlaneClient(f"http://127.0.0.1:{port}", actor=AGENT, token="zt_agent_x", timeout=2)
    effects: List[str] = []
    model = ScriptedModel([[call("get_weather", {"city": "Oslo"}, "c1")], [say("ok")]])
    agent = Agent(
        name=AGENT,
        instructions="help",
        model=model,
        tools=make_tools(effects, AgentsSDKGuardrailPlugin(control_plane=down)),
    )
    await Runner.run(agent, "weather")
    assert effects == []
    assert tool_outputs(model)["c1"].startswith(DENIED_PREFIX + "no decision from the control plane")


async def test_ambiguous_arguments_never_reach_the_tool(client: ControlPlaneClient) -> None:
    # `get_weather` is allowed, but these arguments name two cities: a reader keeping the
    # first and one keeping the last would disagree on what was decided. Refused locally.
    effects: List[str] = []
    plugin = AgentsSDKGuardrailPlugin(control_plane=client)
    doubled = ResponseFunctionToolCall(
        type="function_call",
        call_id="c1",
        name="get_weather",
        arguments='{"city": "Paris", "city": "Pyongyang"}',
        id="c1",
    )
    not_json = ResponseFunctionToolCall(
        type="function_call", call_id="c2", name="get_weather", arguments='{"city": NaN}', id="c2"
    )
    model = ScriptedModel([[doubled, not_json], [say("done")]])
    agent = Agent(name=AGENT, instructions="help", model=model, tools=make_tools(effects, plugin))
    await Runner.run(agent, "weather")
    assert effects == []
    outputs = tool_outputs(model)
    for call_id in ("c1", "c2"):
        assert outputs[call_id] == f"{DENIED_PREFIX}tool arguments are not valid JSON, or are ambiguous"


def test_action_names_and_local_refusals() -> None:
    plugin = AgentsSDKGuardrailPlugin(control_plane=ControlPlaneClient("http://127.0.0.1:9", timeout=1))

    class Ctx:
        tool_name = "create pull/request!"
        tool_namespace = "git hub"
        tool_arguments = '{"owner": "octo", "repo": "demo"}'

    class Data:
        context = Ctx()
        agent = None

    action, resource = plugin.action_mapper(Ctx.tool_name, {"owner": "octo", "repo": "demo"}, Data())
    assert action == "openai.agents.tool.git_hub.create_pull_request" and resource == "octo/demo"
    Ctx.tool_arguments = "[1, 2]"
    assert plugin.decide_for(Data()).reason == "tool arguments must decode to a JSON object"
    Ctx.tool_arguments = "{not json"
    assert plugin.decide_for(Data()).reason == "tool arguments are not valid JSON, or are ambiguous"


async def test_an_argument_the_tool_does_not_declare_is_refused_without_asking(zt: ZtServer, token: str) -> None:
    """`read_file` acts on `path`; an added `resource: "harmless"` was what was decided on (and
    the SDK then dropped it, reading `path`)."""
    recorder = RecordingClient(zt.url, actor=AGENT, token=token, timeout=30)
    plugin = AgentsSDKGuardrailPlugin(control_plane=recorder)
    ran: List[str] = []

    def read_file(path: str) -> str:
        """Read a file."""
        ran.append(path)
        return "contents"

    async def run_search(context: Any, arguments: str) -> str:
        ran.append(arguments)
        return "found"

    search = FunctionTool(
        name="search",
        description="Search; takes extra filters.",
        params_json_schema={"type": "object", "properties": {"path": {"type": "string"}}, "additionalProperties": True},
        on_invoke_tool=run_search,
        strict_json_schema=False,
        tool_input_guardrails=[plugin.create_tool_input_guardrail()],
    )
    model = ScriptedModel(
        [
            [
                call("read_file", {"path": "/etc/shadow", "resource": "harmless"}, "c1"),
                call("read_file", {"path": "notes.txt"}, "c2"),
                call("search", {"path": "docs", "resource": "harmless"}, "c3"),
            ],
            [say("done")],
        ]
    )
    tools = [guarded_function_tool(read_file, plugin), search]
    await Runner.run(Agent(name=AGENT, instructions="help", model=model, tools=tools), "go")
    outputs = tool_outputs(model)
    assert outputs["c1"] == f"{DENIED_PREFIX}argument `resource` is not declared by tool `read_file`"
    # The calls run concurrently: compared in sorted order.
    assert sorted(ran) == ["notes.txt", '{"path": "docs", "resource": "harmless"}']
    assert sorted((action, resource) for action, resource, _ in recorder.asked) == [
        ("openai.agents.tool.read_file", "notes.txt"),
        ("openai.agents.tool.search", "docs"),
    ]


@pytest.mark.parametrize("path", ["", ["/etc/shadow"], 5, None])
def test_a_declared_candidate_that_is_not_a_name_decides_on_nothing(path: Any) -> None:
    """The tool acts on `path`: a later declared candidate (`name`) must not be decided on,
    whether the tool's schema is known (in `agent.tools`) or not."""
    recorder = RecordingClient("http://127.0.0.1:9", actor=AGENT, timeout=1)
    plugin = AgentsSDKGuardrailPlugin(control_plane=recorder)

    async def run(context: Any, arguments: str) -> str:
        return "ran"

    t = FunctionTool(
        name="t",
        description="Acts on `path`.",
        params_json_schema={"type": "object", "properties": {"path": {}, "name": {"type": "string"}}},
        on_invoke_tool=run,
        strict_json_schema=False,
    )

    class Ctx:
        tool_name = "t"
        tool_namespace = None
        tool_arguments = json.dumps({"path": path, "name": "notes"})

    class Data:
        context = Ctx()
        agent = Agent(name=AGENT, tools=[t])

    class Unlisted(Data):
        agent = Agent(name=AGENT, tools=[])

    for data in (Data(), Unlisted()):
        decision = plugin.decide_for(data)
        assert decision.decision == "deny" and decision.resource == ""
    Ctx.tool_arguments = json.dumps({"name": "notes"})  # no `path`: `name` decides
    plugin.decide_for(Data())
    assert [(action, resource) for action, resource, _ in recorder.asked] == [
        ("openai.agents.tool.t", ""),
        ("openai.agents.tool.t", ""),
        ("openai.agents.tool.t", "notes"),
    ]
