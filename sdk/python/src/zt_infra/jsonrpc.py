"""JSON-RPC 2.0 as the gateways answer it: the standard error codes and the error response."""

from __future__ import annotations

from typing import Any, Dict, Optional

#: JSON-RPC "method not found".
METHOD_NOT_FOUND = -32601
#: JSON-RPC "invalid params".
INVALID_PARAMS = -32602
#: JSON-RPC "internal error".
INTERNAL_ERROR = -32603


def error_response(
    request_id: Any, message: str, code: int = INVALID_PARAMS, data: Optional[Dict[str, Any]] = None
) -> Dict[str, Any]:
    """The error answer to the request `request_id` (`data` only when given)."""
    error: Dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}
