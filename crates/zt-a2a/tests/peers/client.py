"""A2A test client built on the official a2a-sdk: resolves the agent card at `--url`, sends one
text message (streaming or not, A2A 1.0 or 0.3 as the card offers) and prints every response
event as one JSON line `{"event": ...}`, or `{"error": ...}` if the call raised.

Usage: client.py --url URL --text TEXT [--resource R] [--stream] [--protocol 1.0|0.3]
"""

import argparse
import asyncio
import json
import uuid

from google.protobuf.json_format import MessageToDict

from a2a.client import ClientConfig, ClientFactory
from a2a.client.card_resolver import A2ACardResolver
from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest

import httpx


async def run(args: argparse.Namespace) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        card = await A2ACardResolver(http, args.url).get_agent_card()
    print(json.dumps({"card_urls": [i.url for i in card.supported_interfaces]}), flush=True)
    kept = [i for i in card.supported_interfaces if i.protocol_version == args.protocol]
    del card.supported_interfaces[:]
    card.supported_interfaces.extend(kept)
    config = ClientConfig(streaming=args.stream, httpx_client=None)
    client = ClientFactory(config).create(card)
    message = Message(
        message_id=str(uuid.uuid4()),
        role=Role.ROLE_USER,
        parts=[Part(text=args.text)],
    )
    if args.resource:
        message.metadata.update({"resource": args.resource})
    try:
        async for event in client.send_message(SendMessageRequest(message=message)):
            print(json.dumps({"event": MessageToDict(event)}), flush=True)
    except Exception as error:  # the test reads what the official client raised
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}), flush=True)
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--text", required=True)
    parser.add_argument("--resource")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--protocol", default="1.0", choices=["1.0", "0.3"])
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
