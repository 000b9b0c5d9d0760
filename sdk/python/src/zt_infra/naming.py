"""Action names built from tool and server names, as the existing adapters build them."""

from __future__ import annotations

import re
from typing import Any, Mapping

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_segment(value: Any) -> str:
    """One action-name segment: every run of characters outside `[A-Za-z0-9_.-]` becomes `_`,
    leading and trailing `._-` are trimmed, and an empty result is `unknown`."""
    cleaned = _UNSAFE.sub("_", str(value).strip())
    return cleaned.strip("._-") or "unknown"


def extract_resource(arguments: Mapping[str, Any]) -> str:
    """A resource name from tool arguments: `owner/repo`, else the first non-empty string among
    `resource`, `repository`, `repo`, `path`, `url`, `name`, `id`; else empty."""
    owner = arguments.get("owner") or arguments.get("org") or arguments.get("organization")
    repo = arguments.get("repo") or arguments.get("repository")
    if isinstance(owner, str) and isinstance(repo, str) and owner and repo:
        return f"{owner}/{repo}"
    for key in ("resource", "repository", "repo", "path", "url", "name", "id"):
        value = arguments.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def snake_case(method: str) -> str:
    """`SendMessage` -> `send_message` (A2A method names in actions)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", method).lower()
