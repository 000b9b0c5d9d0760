"""ZT-Infra Python SDK: ask the control plane before an agent's tool runs, and fail closed.

The core (`ControlPlaneClient`, `AsyncControlPlaneClient`) uses the standard library only.
Framework adapters are imported on first use, so their frameworks are needed only by those
who use them: `zt-infra[langgraph]`, `zt-infra[openai-agents]`, `zt-infra[openai]`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .aio import AsyncControlPlaneClient
from .canonical import canonical_json, record_hash
from .client import ControlPlaneClient
from .decision import Decision, GuardedResult
from .errors import (
    ControlPlaneError,
    ControlPlaneStatusError,
    ControlPlaneTimeout,
    ControlPlaneUnreachable,
    EvidenceError,
    InvalidRequest,
    MalformedDecision,
)
from .naming import extract_resource, safe_segment
from .verify import PinnedKeys

__version__ = "0.1.0"

# Adapter names, resolved lazily: name -> submodule.
_LAZY = {
    "create_policy_decision_node": "langgraph",
    "create_guarded_action_node": "langgraph",
    "route_by_decision": "langgraph",
    "guard_tool": "langgraph",
    "AgentsSDKGuardrailPlugin": "openai_agents",
    "guarded_function_tool": "openai_agents",
    "default_agents_action_mapper": "openai_agents",
    "ZeroTrustResponsesWrapper": "openai_responses",
    "ToolRegistry": "openai_responses",
    "default_response_action_mapper": "openai_responses",
    "MCPZeroTrustGateway": "mcp",
    "default_mcp_action_mapper": "mcp",
    "A2APolicyProxy": "a2a",
    "default_a2a_action_mapper": "a2a",
}

if TYPE_CHECKING:  # pragma: no cover
    from .a2a import A2APolicyProxy, default_a2a_action_mapper
    from .langgraph import create_guarded_action_node, create_policy_decision_node, guard_tool, route_by_decision
    from .mcp import MCPZeroTrustGateway, default_mcp_action_mapper
    from .openai_agents import AgentsSDKGuardrailPlugin, default_agents_action_mapper, guarded_function_tool
    from .openai_responses import ToolRegistry, ZeroTrustResponsesWrapper, default_response_action_mapper


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zt_infra' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "AsyncControlPlaneClient",
    "ControlPlaneClient",
    "ControlPlaneError",
    "ControlPlaneStatusError",
    "ControlPlaneTimeout",
    "ControlPlaneUnreachable",
    "Decision",
    "EvidenceError",
    "GuardedResult",
    "InvalidRequest",
    "MalformedDecision",
    "PinnedKeys",
    "canonical_json",
    "extract_resource",
    "record_hash",
    "safe_segment",
    # adapters (lazy)
    "A2APolicyProxy",
    "AgentsSDKGuardrailPlugin",
    "MCPZeroTrustGateway",
    "ToolRegistry",
    "ZeroTrustResponsesWrapper",
    "create_guarded_action_node",
    "create_policy_decision_node",
    "default_a2a_action_mapper",
    "default_agents_action_mapper",
    "default_mcp_action_mapper",
    "default_response_action_mapper",
    "guard_tool",
    "guarded_function_tool",
    "route_by_decision",
]
