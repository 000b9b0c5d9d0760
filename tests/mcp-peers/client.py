"""Drives an MCP server through `zt mcp-gateway` with the official Python SDK's client.

Usage: client.py SCENARIO
The gateway: ZT_TEST_GATEWAY_URL (Streamable HTTP) if set, else ZT_TEST_GATEWAY_CMD (a JSON
list: the command the client launches, stdio).

Prints one JSON object with what the client saw; the Rust end-to-end tests assert on it.
"""

import json
import os
import signal
import sys

import anyio
import mcp.types as types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


def tool_result(result: types.CallToolResult) -> dict:
    return {
        "isError": bool(result.is_error),
        "text": [c.text for c in result.content if isinstance(c, types.TextContent)],
        "structuredContent": result.structured_content,
    }


async def sampling(context, params):
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="sampled by the test client"),
        model="test-model",
        stop_reason="endTurn",
    )


async def list_roots(context):
    return types.ListRootsResult(roots=[types.Root(uri="file:///zt-test-root", name="zt-root")])


async def everything(session: ClientSession, out: dict, notes: list) -> None:
    tools = await session.list_tools()
    out["tools"] = sorted(t.name for t in tools.tools)
    out["echo"] = tool_result(await session.call_tool("echo", {"message": "hello through zt"}))
    out["denied_sum"] = tool_result(await session.call_tool("get-sum", {"a": 1, "b": 2}))
    progress = []

    async def on_progress(value, total, message):
        progress.append([value, total])

    out["long"] = tool_result(
        await session.call_tool(
            "trigger-long-running-operation",
            {"duration": 1, "steps": 3},
            progress_callback=on_progress,
        )
    )
    out["progress"] = progress
    out["sampling"] = tool_result(
        await session.call_tool("trigger-sampling-request", {"prompt": "hi", "maxTokens": 5})
    )
    out["roots"] = tool_result(await session.call_tool("get-roots-list", {}))
    out["logging"] = tool_result(await session.call_tool("toggle-simulated-logging", {}))
    out["env"] = tool_result(await session.call_tool("get-env", {}))
    with anyio.move_on_after(10):
        while not any(n.startswith("notifications/message") for n in notes):
            await anyio.sleep(0.05)
    resources = await session.list_resources()
    out["resources"] = len(resources.resources)
    prompts = await session.list_prompts()
    out["prompts"] = sorted(p.name for p in prompts.prompts)


async def filesystem(session: ClientSession, out: dict, notes: list) -> None:
    base = os.environ["ZT_TEST_DIR"]
    out["allowed_write"] = tool_result(
        await session.call_tool(
            "write_file", {"path": f"{base}/allowed/ok.txt", "content": "written"}
        )
    )
    out["denied_write"] = tool_result(
        await session.call_tool(
            "write_file", {"path": f"{base}/elsewhere.txt", "content": "must not exist"}
        )
    )
    out["read"] = tool_result(
        await session.call_tool("read_text_file", {"path": f"{base}/allowed/ok.txt"})
    )


async def kill_control_plane(session: ClientSession, out: dict, notes: list) -> None:
    out["before"] = tool_result(await session.call_tool("echo", {"message": "before"}))
    os.kill(int(os.environ["ZT_TEST_CONTROL_PLANE_PID"]), signal.SIGKILL)
    out["after"] = tool_result(await session.call_tool("echo", {"message": "after"}))
    # The session is still usable: what is not a tool call still flows.
    out["tools_after"] = len((await session.list_tools()).tools)


async def undeclared(session: ClientSession, out: dict, notes: list) -> None:
    """A call with an argument its tool does not declare: refused, the session goes on."""
    try:
        await session.call_tool("echo", {"message": "x", "resource": "elsewhere"})
        out["undeclared"] = "called"
    except MCPError as error:
        out["undeclared"] = {"code": error.error.code, "message": error.error.message}
    out["echo"] = tool_result(await session.call_tool("echo", {"message": "declared"}))


SCENARIOS = {
    "everything": everything,
    "filesystem": filesystem,
    "kill-control-plane": kill_control_plane,
    "undeclared": undeclared,
}


async def main() -> None:
    scenario = SCENARIOS[sys.argv[1]]
    url = os.environ.get("ZT_TEST_GATEWAY_URL")
    if url:
        transport = streamable_http_client(url)
    else:
        command = json.loads(os.environ["ZT_TEST_GATEWAY_CMD"])
        params = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
        transport = stdio_client(params)
    notes: list = []
    out: dict = {"notifications": notes}

    async def on_message(message) -> None:
        if isinstance(message, Exception):
            notes.append(f"exception: {message}")
        else:
            notes.append(message.method)

    async def on_log(params) -> None:
        notes.append("notifications/message")

    with anyio.fail_after(120):
        async with transport as (read, write):
            async with ClientSession(
                read,
                write,
                sampling_callback=sampling,
                # The filesystem server would take the client's roots as its allowed directories.
                list_roots_callback=list_roots if scenario is everything else None,
                message_handler=on_message,
                logging_callback=on_log,
            ) as session:
                init = await session.initialize()
                out["server_name"] = init.server_info.name
                out["capabilities"] = sorted(
                    k for k, v in init.capabilities.model_dump().items() if v is not None
                )
                await scenario(session, out, notes)
    print(json.dumps(out))


anyio.run(main)
