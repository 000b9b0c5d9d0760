"""What a tool's input JSON schema says about a call's arguments, for the adapters that know it.

A model (a prompt-injected one included) can add an argument the tool does not take, such as
`resource: "harmless"` on a `write_file` that acts on `path`: the decision would be made on
`harmless` while the tool writes `path`. So, as the MCP gateway of the Rust workspace does:

1. the declared arguments are the keys of the schema's `properties` (none without it);
2. a call carrying an undeclared argument is refused before any decision, unless the schema's
   `additionalProperties` is `true` or an object: then extras are allowed (the decision's
   context still carries them) but never choose the resource;
3. the resource is read from the declared arguments only (`naming.declared_resource`): the
   first candidate among them decides, and one that is not a name decides on `""`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, Mapping, Optional

from .naming import declared_only, declared_resource, extract_resource


@dataclass(frozen=True)
class ToolSchema:
    """The argument names a tool declares, and whether it takes others too. `declared=None`:
    the schema is not known, and every argument is read as before (`UNKNOWN_SCHEMA`)."""

    declared: Optional[FrozenSet[str]]
    extras_allowed: bool = False

    @classmethod
    def from_json_schema(cls, schema: Any) -> "ToolSchema":
        """From an input JSON schema (MCP `inputSchema`, OpenAI `parameters`, ...); anything
        that is not an object declares nothing and takes nothing."""
        if not isinstance(schema, Mapping):
            return cls(frozenset())
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        return cls(
            declared=frozenset(properties) if isinstance(properties, Mapping) else frozenset(),
            # `true` or a schema for the extras; absent counts as not allowed (fail closed).
            extras_allowed=additional is True or isinstance(additional, Mapping),
        )

    def refusal(self, tool: str, arguments: Mapping[str, Any]) -> Optional[str]:
        """Why a call with `arguments` is refused before any decision, or None. The first
        undeclared name in sorted order, so the reason does not depend on the arguments' order."""
        if self.declared is None or self.extras_allowed:
            return None
        undeclared = sorted(set(arguments) - self.declared)
        return f"argument `{undeclared[0]}` is not declared by tool `{tool}`" if undeclared else None

    def declared_arguments(self, arguments: Mapping[str, Any]) -> Dict[str, Any]:
        """The arguments an action mapper may read: the declared ones."""
        return declared_only(arguments, self.declared)

    def resource(self, arguments: Mapping[str, Any]) -> str:
        """The decision's resource, from the declared arguments only (`declared_resource`, as
        the default action mappers of the MCP gateway and the OpenAI Agents guardrail read
        them); a schema not known reads every argument as before (`extract_resource`)."""
        if self.declared is None:
            return extract_resource(arguments)
        return declared_resource(self.declared_arguments(arguments))


#: The schema of a tool the adapter cannot see: nothing refused, every argument read.
UNKNOWN_SCHEMA = ToolSchema(declared=None)
