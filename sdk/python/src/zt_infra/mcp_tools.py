"""The MCP gateway's copy of the server's tool schemas, read with its own `tools/list` requests
through the gateway's `downstream` (following `nextCursor`), so a call is checked against the
arguments its tool declares (`tool_schema`)."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any, Callable, Dict, Mapping, Optional

from .tool_schema import ToolSchema

Downstream = Callable[[Dict[str, Any]], Optional[Dict[str, Any]]]

#: Pages of one `tools/list` followed at most; a list going on past them is not read (a
#: server answering cursors forever would hold the call).
MAX_TOOL_LIST_PAGES = 64
#: The gateway's own request ids, `zt-gateway/tools-list/1`, `.../2`, ...
REQUEST_ID_PREFIX = "zt-gateway/tools-list/"
#: A list read this recently is not read again for a call it does not cover: an agent's calls
#: of unknown tools cost the server at most one `tools/list` a second.
REFRESH_AFTER_S = 1.0
#: A list older than this is read again before it is used (the server's tools may have changed).
MAX_AGE_S = 60.0


class ToolListError(RuntimeError):
    """The server's tool list could not be read."""


class ServerTools:
    """Tool schemas by name, as the server last listed them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._schemas: Dict[str, ToolSchema] = {}
        self._read_at: Optional[float] = None
        self._clock = clock
        self._ids = itertools.count(1)

    def schema(self, tool: str, downstream: Downstream, arguments: Mapping[str, Any]) -> Optional[ToolSchema]:
        """`tool`'s schema: from the list already read when it covers this call (the tool is
        listed, declares every argument, and the list is under a minute old), else from the
        list read again (at most once a second). None for a tool the server does not list.
        Raises `ToolListError` when the list cannot be read."""
        now = self._clock()
        age = None if self._read_at is None else now - self._read_at
        known = self._schemas.get(tool)
        if known is not None and age is not None and age < MAX_AGE_S and known.refusal(tool, arguments) is None:
            return known
        if age is None or age >= REFRESH_AFTER_S:
            self._schemas = self._fetch(downstream)
            self._read_at = self._clock()
        return self._schemas.get(tool)

    def _fetch(self, downstream: Downstream) -> Dict[str, ToolSchema]:
        tools: Dict[str, ToolSchema] = {}
        cursor: Optional[str] = None
        for _ in range(MAX_TOOL_LIST_PAGES):
            request_id = f"{REQUEST_ID_PREFIX}{next(self._ids)}"
            request: Dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": "tools/list"}
            if cursor is not None:
                request["params"] = {"cursor": cursor}
            try:
                answer = downstream(request)
            except Exception as error:  # whatever the transport raises: the list is not read
                raise ToolListError(f"{type(error).__name__}: {error}") from error
            cursor = read_page(_result(answer, request_id), tools)
            if cursor is None:
                return tools
        raise ToolListError(f"more than {MAX_TOOL_LIST_PAGES} pages")


def read_page(result: Any, tools: Dict[str, ToolSchema]) -> Optional[str]:
    """Adds a `tools/list` result's tool schemas to `tools` (by name) and returns its
    `nextCursor` (None on the last page). Raises `ToolListError` when it is not a tool list."""
    listed = result.get("tools") if isinstance(result, dict) else None
    if not isinstance(listed, list):
        raise ToolListError("the result has no `tools` array")
    for tool in listed:
        name = tool.get("name") if isinstance(tool, dict) else None
        if not isinstance(name, str):
            raise ToolListError("a tool without a name")
        if "inputSchema" not in tool:
            raise ToolListError(f"tool `{name}` has no inputSchema")
        # Two tools of one name: which one the server runs is its guess, not ours.
        if name in tools:
            raise ToolListError(f"tool `{name}` is listed twice")
        tools[name] = ToolSchema.from_json_schema(tool["inputSchema"])
    cursor = result.get("nextCursor")
    if cursor is not None and not isinstance(cursor, str):
        raise ToolListError("`nextCursor` is not a string")
    return cursor


def _result(answer: Any, request_id: str) -> Any:
    if answer is None:
        raise ToolListError("no answer")
    if not isinstance(answer, dict):
        raise ToolListError("the answer is not an object")
    if answer.get("id") != request_id:
        raise ToolListError("the answer is for another request")
    if "result" in answer:
        return answer["result"]
    if "error" in answer:
        raise ToolListError(f"the server answered {json.dumps(answer['error'], separators=(',', ':'))}")
    raise ToolListError("the answer has neither result nor error")
