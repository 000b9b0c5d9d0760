"""A local HTTP server that answers `POST /v1/responses` with scripted Responses API JSON, so
the real `openai` client can be driven without network."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List


def function_call(name: str, arguments: Dict[str, Any], call_id: str) -> Dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{call_id}",
        "call_id": call_id,
        "name": name,
        "arguments": json.dumps(arguments),
        "status": "completed",
    }


def message(text: str) -> Dict[str, Any]:
    return {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def response(output: List[Dict[str, Any]], number: int, tools: List[Any]) -> Dict[str, Any]:
    return {
        "id": f"resp_{number}",
        "object": "response",
        "created_at": 1796000000,
        "model": "scripted",
        "status": "completed",
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": tools,  # the request's, as the Responses API echoes them
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "temperature": 1.0,
        "top_p": 1.0,
    }


class FakeResponsesAPI:
    def __init__(self, turns: List[List[Dict[str, Any]]]) -> None:
        self.turns = list(turns)
        self.requests: List[Dict[str, Any]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
                api.requests.append({"path": self.path, "body": body})
                if self.path != "/v1/responses" or not api.turns:
                    answer, status = {"error": {"message": "unexpected request", "type": "invalid_request_error"}}, 400
                else:
                    answer, status = response(api.turns.pop(0), len(api.requests), body.get("tools") or []), 200
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
