"""The rules every adapter that knows a tool's input schema applies (`zt_infra.tool_schema`)."""

from __future__ import annotations

from typing import Any

import pytest

from zt_infra import default_agents_action_mapper, default_mcp_action_mapper, extract_resource
from zt_infra.tool_schema import UNKNOWN_SCHEMA, ToolSchema

WRITE_FILE = {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}}


def test_declared_arguments_are_the_schemas_properties() -> None:
    assert ToolSchema.from_json_schema(WRITE_FILE) == ToolSchema(frozenset({"path", "content"}))
    for nothing in ({"type": "object"}, {"properties": []}, None, [], "object"):
        assert ToolSchema.from_json_schema(nothing) == ToolSchema(frozenset()), nothing


@pytest.mark.parametrize(
    ("additional", "allowed"),
    [(True, True), ({"type": "string"}, True), ({}, True), (False, False), (None, False), ("true", False)],
)
def test_extras_are_allowed_only_by_additional_properties_true_or_a_schema(additional: Any, allowed: bool) -> None:
    schema = ToolSchema.from_json_schema({**WRITE_FILE, "additionalProperties": additional})
    refusal = schema.refusal("write_file", {"path": "a", "resource": "harmless"})
    assert refusal == (None if allowed else "argument `resource` is not declared by tool `write_file`")


def test_the_refusal_names_the_first_undeclared_argument_in_sorted_order() -> None:
    schema = ToolSchema.from_json_schema(WRITE_FILE)
    assert schema.refusal("write_file", {"path": "a", "content": "c"}) is None
    assert (
        schema.refusal("write_file", {"z": 1, "path": "a", "b": 2})
        == "argument `b` is not declared by tool `write_file`"
    )
    assert ToolSchema.from_json_schema({}).refusal("ping", {"x": 1}) == "argument `x` is not declared by tool `ping`"
    assert UNKNOWN_SCHEMA.refusal("anything", {"x": 1}) is None


def test_the_resource_is_chosen_among_declared_arguments_only() -> None:
    arguments = {"resource": "harmless", "path": "/etc/passwd", "owner": "acme", "repo": "zt"}
    assert extract_resource(arguments) == "acme/zt"  # no schema: as before
    assert extract_resource(arguments, {"path", "content"}) == "/etc/passwd"
    # `owner/repo` only when both are declared; `org` and `organization` still name the owner.
    assert extract_resource(arguments, {"repo", "path"}) == "zt"
    assert extract_resource({"org": "acme", "repo": "zt"}, {"org", "repo"}) == "acme/zt"
    assert extract_resource({"organization": "acme", "repository": "zt"}, {"repository"}) == "zt"
    assert extract_resource({"resource": "harmless"}, set()) == ""
    schema = ToolSchema.from_json_schema({**WRITE_FILE, "additionalProperties": True})
    assert schema.resource(arguments) == "/etc/passwd"
    assert schema.declared_arguments(arguments) == {"path": "/etc/passwd"}
    assert UNKNOWN_SCHEMA.declared_arguments(arguments) == arguments


def test_a_declared_candidate_that_is_not_a_name_decides_on_nothing() -> None:
    # The tool acts on the array's path: deciding on `notes` would let the model choose.
    arguments = {"path": ["/etc/shadow"], "name": "notes"}
    assert extract_resource(arguments, {"path", "name"}) == ""
    assert extract_resource({"resource": 5, "name": "n"}, {"resource", "name"}) == ""
    assert extract_resource(arguments) == "notes"  # no schema: as before
    # Every adapter's path to the resource reads it so: the schema's, and the default mappers'
    # (which get the declared arguments only).
    schema = ToolSchema.from_json_schema({"properties": {"path": {}, "name": {}}})
    assert schema.resource(arguments) == ""
    assert default_mcp_action_mapper("s", "t", schema.declared_arguments(arguments)) == ("mcp.s.t", "")
    assert default_agents_action_mapper("t", schema.declared_arguments(arguments), None) == ("openai.agents.tool.t", "")
