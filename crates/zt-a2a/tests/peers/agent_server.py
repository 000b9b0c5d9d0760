"""A2A test agent built on the official a2a-sdk: echoes the user's text and, for every message
it executes, appends one JSON line to a side-effect file. A message that never reached the agent
leaves no line. A text starting with `gated:` is held after the working event until the file
`<side effects>.gate` exists (the task fails if it never does), so a test can tell a stream
relayed event by event from one buffered to its end. Serves JSON-RPC for A2A 1.0 and 0.3 on `/`.

Usage: agent_server.py --port PORT --side-effects FILE
"""

import argparse
import asyncio
import json
import os

import uvicorn
from starlette.applications import Starlette

from a2a.helpers.proto_helpers import new_task_from_user_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandlerV2
from a2a.server.routes.agent_card_routes import create_agent_card_routes
from a2a.server.routes.jsonrpc_routes import create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
)


async def wait_for(path: str, seconds: float = 60) -> bool:
    for _ in range(int(seconds * 10)):
        if os.path.exists(path):
            return True
        await asyncio.sleep(0.1)
    return False


class EchoExecutor(AgentExecutor):
    def __init__(self, side_effects: str) -> None:
        self.side_effects = side_effects

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        text = context.get_user_input()
        with open(self.side_effects, "a", encoding="utf-8") as out:
            out.write(json.dumps({"text": text, "task_id": context.task_id}) + "\n")
        if context.current_task is None:
            await event_queue.enqueue_event(new_task_from_user_message(context.message))
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.start_work()
        if text.startswith("gated:") and not await wait_for(self.side_effects + ".gate"):
            # The test opens the gate only after it has seen the working event.
            await updater.failed()
            return
        await updater.add_artifact([new_text_part(f"echo: {text}")], name="echo")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--side-effects", required=True)
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}/"
    card = AgentCard(
        name="echo agent",
        description="echoes its input (zt-a2a test peer)",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0"),
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="0.3"),
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            AgentSkill(id="echo", name="echo", description="echoes", tags=["echo"])
        ],
    )
    handler = DefaultRequestHandlerV2(
        agent_executor=EchoExecutor(args.side_effects),
        task_store=InMemoryTaskStore(),
        agent_card=card,
    )
    routes = create_agent_card_routes(card) + create_jsonrpc_routes(
        handler, rpc_url="/", enable_v0_3_compat=True
    )
    uvicorn.run(Starlette(routes=routes), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
