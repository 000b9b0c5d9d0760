"""Action names built from tool and server names, and resources from tool arguments, as the
existing adapters build them."""

from __future__ import annotations

import re
from typing import Any, Collection, Dict, Mapping, Optional

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_segment(value: Any) -> str:
    """One action-name segment: every run of characters outside `[A-Za-z0-9_.-]` becomes `_`,
    leading and trailing `._-` are trimmed, and an empty result is `unknown`."""
    cleaned = _UNSAFE.sub("_", str(value).strip())
    return cleaned.strip("._-") or "unknown"


def declared_only(arguments: Mapping[str, Any], declared: Optional[Collection[str]]) -> Dict[str, Any]:
    """The arguments whose names are in `declared` (the names a tool's input schema declares);
    all of them when `declared` is None (the tool's schema is not known)."""
    return {key: value for key, value in arguments.items() if declared is None or key in declared}


def extract_resource(arguments: Mapping[str, Any], declared: Optional[Collection[str]] = None) -> str:
    """A resource name from tool arguments: `owner/repo`, else the first non-empty string among
    `resource`, `repository`, `repo`, `path`, `url`, `name`, `id`; else empty.

    With `declared`, only those arguments are read: an argument the tool does not take (added
    by the model to steer the decision) never names the resource, and `owner/repo` needs both
    names declared; nor does a later candidate when an earlier declared one is there but not a
    name (`"path": ["/etc/shadow"]` beside `"name": "notes"` is decided on `""`), as the Rust
    gateway reads it. `None` reads every argument, skipping what is not a name, as before, for
    callers that do not know the schema."""
    arguments = declared_only(arguments, declared)
    owner = arguments.get("owner") or arguments.get("org") or arguments.get("organization")
    repo = arguments.get("repo") or arguments.get("repository")
    if isinstance(owner, str) and isinstance(repo, str) and owner and repo:
        return f"{owner}/{repo}"
    for key in ("resource", "repository", "repo", "path", "url", "name", "id"):
        if key not in arguments:
            continue
        value = arguments[key]
        if isinstance(value, str) and value.strip():
            return value.strip()
        if declared is not None:
            return ""
    return ""


def declared_resource(declared_arguments: Mapping[str, Any]) -> str:
    """The resource among arguments that are all declared by the tool (what the MCP gateway and
    the OpenAI Agents guardrail hand an action mapper): `extract_resource` with those names as
    the declared ones, so a candidate there that is not a name (`"path": ""` or
    `"path": ["/etc/shadow"]` beside `"name": "notes"`) decides on `""`, never on a later one."""
    return extract_resource(declared_arguments, declared_arguments.keys())


def snake_case(method: str) -> str:
    """`SendMessage` -> `send_message` (A2A method names in actions)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", method).lower()
