"""The MCP gateway holds each `tools/call` to its tool's `inputSchema`, read from the server's
`tools/list`: an argument the tool does not declare cannot choose the resource decided on."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
from fake_mcp import FakeMCPServer, tool
from mcp_stdio import StdioServer, peer_or_skip
from recording_client import RecordingClient
from zt_server import ZtServer

from zt_infra import MCPZeroTrustGateway
from zt_infra.mcp_tools import MAX_TOOL_LIST_PAGES, ServerTools

ACTOR = "py-mcp-schema-agent"


@pytest.fixture(scope="module")
def token(zt: ZtServer) -> str:
    token = zt.register(ACTOR)
    zt.allow("mcp.filesystem.write_file", "the agent may write in its directory")
    zt.allow("mcp.docs.search", "searching is fine")
    return token


@pytest.fixture
def client(zt: ZtServer, token: str) -> RecordingClient:
    return RecordingClient(zt.url, actor=ACTOR, token=token, timeout=30)


@pytest.fixture
def filesystem(tmp_path: Path) -> Iterator[StdioServer]:
    """`@modelcontextprotocol/server-filesystem` serving `tmp_path`: `write_file` declares
    `path` and `content`, and ignores any other argument."""
    server = StdioServer([str(peer_or_skip("mcp-server-filesystem")), str(tmp_path.resolve())])
    yield server
    server.close()


def call(tool_name: str, arguments: Dict[str, Any], request_id: Any = 1) -> Dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool_name, "arguments": arguments},
    }


def error(answer: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    assert answer is not None and "error" in answer, answer
    return dict(answer["error"])


def calls_received(server: StdioServer) -> List[Dict[str, Any]]:
    return [m for m in server.received if m.get("method") == "tools/call"]


def test_an_argument_the_tool_does_not_declare_is_refused_before_any_decision(
    client: RecordingClient, filesystem: StdioServer, tmp_path: Path
) -> None:
    """The attack: `write_file` acts on `path`; an added `resource: "harmless"` was what the
    gateway decided on, and the server wrote `path` regardless."""
    gateway = MCPZeroTrustGateway(filesystem, control_plane=client, actor=ACTOR, server_name="filesystem")
    target = tmp_path.resolve() / "target.txt"
    attack = {"path": str(target), "content": "pwned", "resource": "harmless"}
    assert error(gateway.handle_message(call("write_file", attack))) == {
        "code": -32602,
        "message": "argument `resource` is not declared by tool `write_file`",
    }
    assert client.asked == [] and calls_received(filesystem) == [] and not target.exists()
    # Several undeclared names: the first in sorted order is named, whatever the order sent.
    several = {"zeta": "1", "path": str(target), "content": "x", "alpha": "2"}
    assert error(gateway.handle_message(call("write_file", several)))["message"] == (
        "argument `alpha` is not declared by tool `write_file`"
    )
    # The declared arguments alone: decided on `path`, and written.
    answer = gateway.handle_message(call("write_file", {"path": str(target), "content": "ok"}, 2))
    assert answer is not None and "error" not in answer and answer["result"].get("isError") is not True, answer
    assert [(a, r) for a, r, _ in client.asked] == [("mcp.filesystem.write_file", str(target))]
    assert target.read_text() == "ok"
    # The server's list was read once, with the gateway's own request id.
    assert [m["id"] for m in filesystem.received if m.get("method") == "tools/list"] == ["zt-gateway/tools-list/1"]


def test_a_tool_the_server_does_not_list_is_refused(client: RecordingClient, filesystem: StdioServer) -> None:
    gateway = MCPZeroTrustGateway(filesystem, control_plane=client, actor=ACTOR, server_name="filesystem")
    for request_id in (1, 2):
        assert error(gateway.handle_message(call("delete_everything", {"path": "/"}, request_id))) == {
            "code": -32602,
            "message": "tool `delete_everything` is not in the server's tools/list",
        }
    # The list was read once (not again within a second, however many unknown names come),
    # and neither the call nor a decision happened.
    listed = [m for m in filesystem.received if m.get("method") == "tools/list"]
    assert len(listed) == 1 and calls_received(filesystem) == [] and client.asked == []


def test_extras_a_schema_allows_reach_the_context_but_never_the_resource(client: RecordingClient) -> None:
    seen: List[Dict[str, Any]] = []

    def mapper(server: str, tool_name: str, arguments: Dict[str, Any]) -> Any:
        seen.append(arguments)
        return "mcp.docs.search", arguments.get("resource") or arguments.get("path") or ""

    for additional in (True, {"type": "string"}):
        server = FakeMCPServer([tool("search", ["path"], additionalProperties=additional)])
        for custom in (None, mapper):
            options = {} if custom is None else {"action_mapper": custom}
            gateway = MCPZeroTrustGateway(server, control_plane=client, actor=ACTOR, server_name="docs", **options)
            arguments = {"path": "docs/public", "resource": "harmless", "limit": "3"}
            answer = gateway.handle_message(call("search", arguments))
            assert answer is not None and "error" not in answer and "isError" not in answer["result"], answer
            action, resource, context = client.asked[-1]
            assert (action, resource) == ("mcp.docs.search", "docs/public")
            assert context == {"source": "mcp", "tool_arguments": arguments}
        assert server.forwarded == [call("search", arguments)] * 2
    # A mapper written for (server, tool, arguments) still works, and gets the declared arguments.
    assert seen == [{"path": "docs/public"}] * 2


def test_the_tool_list_is_read_page_by_page(client: RecordingClient) -> None:
    tools = [tool(f"tool{n}", ["id"]) for n in range(4)] + [tool("search", ["path"])]
    server = FakeMCPServer(tools, page_size=2)
    gateway = MCPZeroTrustGateway(server, control_plane=client, actor=ACTOR, server_name="docs")
    answer = gateway.handle_message(call("search", {"path": "docs/public"}))
    assert answer is not None and "error" not in answer, answer
    assert client.asked[-1][:2] == ("mcp.docs.search", "docs/public")
    assert server.listed == [
        {"jsonrpc": "2.0", "id": "zt-gateway/tools-list/1", "method": "tools/list"},
        {"jsonrpc": "2.0", "id": "zt-gateway/tools-list/2", "method": "tools/list", "params": {"cursor": "2"}},
        {"jsonrpc": "2.0", "id": "zt-gateway/tools-list/3", "method": "tools/list", "params": {"cursor": "4"}},
    ]
    # Known now: a second call reads nothing; an undeclared argument on the last page's tool
    # is refused from the copy.
    gateway.handle_message(call("search", {"path": "docs/public"}, 2))
    assert error(gateway.handle_message(call("search", {"path": "p", "id": "x"}, 3)))["code"] == -32602
    assert len(server.listed) == 3


def test_a_tool_added_later_is_found_by_reading_the_list_again(client: RecordingClient) -> None:
    server = FakeMCPServer([tool("read", ["id"])])
    gateway = MCPZeroTrustGateway(server, control_plane=client, actor=ACTOR, server_name="docs")
    gateway.handle_message(call("read", {"id": "1"}))
    server.tools.append(tool("search", ["path"]))
    time.sleep(1.1)  # a list read within the last second is not read again
    answer = gateway.handle_message(call("search", {"path": "docs/public"}, 2))
    assert answer is not None and "error" not in answer, answer
    assert len(server.listed) == 2 and [m["id"] for m in server.forwarded] == [2]
    assert [action for action, _, _ in client.asked] == ["mcp.docs.read", "mcp.docs.search"]


def test_the_list_is_read_again_at_most_once_a_second_and_after_a_minute() -> None:
    server = FakeMCPServer([tool("search", ["path"])])
    now = [100.0]
    tools = ServerTools(clock=lambda: now[0])
    assert tools.schema("search", server, {"path": "p"}) is not None
    for _ in range(5):  # unknown names and undeclared arguments within the second: no reading
        assert tools.schema("nope", server, {}) is None
        assert tools.schema("search", server, {"path": "p", "x": 1}) is not None
    assert len(server.listed) == 1
    now[0] += 1.5  # past a second: an argument the kept list does not declare reads it again
    tools.schema("search", server, {"path": "p", "x": 1})
    assert len(server.listed) == 2
    now[0] += 30  # a covered call within the minute: the kept list
    tools.schema("search", server, {"path": "p"})
    assert len(server.listed) == 2
    now[0] += 31  # over a minute old: read again, whatever the call
    tools.schema("search", server, {"path": "p"})
    assert len(server.listed) == 3


class Unreadable(FakeMCPServer):
    """A server whose `tools/list` answers are replaced by `answer(request)`."""

    def __init__(self, answer: Any) -> None:
        super().__init__([tool("search", ["path"])])
        self.answer = answer

    def __call__(self, message: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        if message.get("method") == "tools/list":
            self.listed.append(message)
            return self.answer(message)
        return super().__call__(message)


def _raise(message: Dict[str, Any]) -> Any:
    raise ConnectionError("the server went away")


def _page(result: Any) -> Any:
    return lambda message: {"jsonrpc": "2.0", "id": message["id"], "result": result}


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (_raise, "ConnectionError: the server went away"),
        (lambda m: None, "no answer"),
        (lambda m: [], "the answer is not an object"),
        (
            lambda m: {"jsonrpc": "2.0", "id": m["id"], "error": {"code": -32601, "message": "no"}},
            'the server answered {"code":-32601,"message":"no"}',
        ),
        (lambda m: {"jsonrpc": "2.0", "id": m["id"]}, "the answer has neither result nor error"),
        (lambda m: {"jsonrpc": "2.0", "id": "other", "result": {"tools": []}}, "the answer is for another request"),
        (_page({"tools": {}}), "the result has no `tools` array"),
        (_page({"tools": [{"inputSchema": {}}]}), "a tool without a name"),
        (_page({"tools": [{"name": "search"}]}), "tool `search` has no inputSchema"),
        (_page({"tools": [tool("search", []), tool("search", ["path"])]}), "tool `search` is listed twice"),
        (_page({"tools": [], "nextCursor": 2}), "`nextCursor` is not a string"),
        (_page({"tools": [], "nextCursor": ""}), f"more than {MAX_TOOL_LIST_PAGES} pages"),
    ],
    ids=[
        "raises",
        "no answer",
        "not an object",
        "error",
        "neither",
        "other id",
        "no tools",
        "no name",
        "no schema",
        "twice",
        "bad cursor",
        "endless",
    ],
)
def test_a_tool_list_that_cannot_be_read_refuses_the_call(client: RecordingClient, answer: Any, why: str) -> None:
    server = Unreadable(answer)
    gateway = MCPZeroTrustGateway(server, control_plane=client, actor=ACTOR, server_name="docs")
    assert error(gateway.handle_message(call("search", {"path": "docs/public"}))) == {
        "code": -32603,
        "message": f"the server's tool list could not be read: {why}",
    }
    assert server.forwarded == [] and client.asked == []
    assert 1 <= len(server.listed) <= MAX_TOOL_LIST_PAGES


@pytest.mark.parametrize("path", ["", ["/etc/shadow"], 5, None])
def test_a_declared_candidate_that_is_not_a_name_decides_on_nothing(path: Any) -> None:
    """The tool acts on `path`: a later declared candidate (`name`) must not be decided on."""
    recorder = RecordingClient("http://127.0.0.1:9", actor=ACTOR, timeout=1)
    server = FakeMCPServer([tool("t", ["path", "name"])])
    gateway = MCPZeroTrustGateway(server, control_plane=recorder, actor=ACTOR, server_name="docs")
    gateway.handle_message(call("t", {"path": path, "name": "notes"}))
    gateway.handle_message(call("t", {"name": "notes"}, 2))  # no `path`: `name` decides
    assert [(action, resource) for action, resource, _ in recorder.asked] == [
        ("mcp.docs.t", ""),
        ("mcp.docs.t", "notes"),
    ]
    assert server.forwarded == []  # the control plane is down: nothing runs
