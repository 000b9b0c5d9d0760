"""An MCP server stand-in for the gateway's `downstream`: answers `tools/list` from a list of
tools (in pages when asked), and every other request with an empty tool result."""

from __future__ import annotations

from typing import Any, Dict, List, Optional


def tool(name: str, properties: List[str], **schema: Any) -> Dict[str, Any]:
    """A listed tool whose `inputSchema` declares `properties` (strings), plus `schema` keys."""
    input_schema = {"type": "object", "properties": {p: {"type": "string"} for p in properties}, **schema}
    return {"name": name, "inputSchema": input_schema}


class FakeMCPServer:
    def __init__(self, tools: List[Dict[str, Any]], page_size: Optional[int] = None) -> None:
        self.tools = tools
        self.page_size = page_size
        #: The `tools/list` requests received, and every other message.
        self.listed: List[Dict[str, Any]] = []
        self.forwarded: List[Dict[str, Any]] = []

    def __call__(self, message: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        if message.get("method") != "tools/list":
            self.forwarded.append(message)
            return {"jsonrpc": "2.0", "id": message.get("id"), "result": {"content": []}}
        self.listed.append(message)
        start = int((message.get("params") or {}).get("cursor") or 0)
        end = len(self.tools) if self.page_size is None else start + self.page_size
        result: Dict[str, Any] = {"tools": self.tools[start:end]}
        if end < len(self.tools):
            result["nextCursor"] = str(end)
        return {"jsonrpc": "2.0", "id": message["id"], "result": result}
