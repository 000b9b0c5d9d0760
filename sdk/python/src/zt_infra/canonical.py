"""Canonical JSON and record hashing, as the control plane computes them.

Canonical JSON is keys sorted recursively by code point, no whitespace, JSON string escaping
(short escapes for backspace, form feed, newline, carriage return and tab, `\\u00xx` in lower
case for other control characters, everything else literal UTF-8): RFC 8785 for the records'
field types, and byte for byte what the server's `canonical_json` writes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

#: Keys of a stored record that are not part of its hashed body.
UNHASHED_KEYS = frozenset({"current_hash", "kms_signature"})

#: The `previous_hash` of the first record of every chain.
GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> bytes:
    """The canonical JSON bytes of `value` (strings, integers, booleans, null, lists, dicts).

    Floats are refused: the control plane's records hold none, and their text form differs
    between JSON writers, so a float can only make a hash disagree.
    """
    _refuse_floats(value)
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # A lone surrogate cannot be UTF-8: such a string cannot come from the server.
    return text.encode("utf-8")


def record_hash(record: Mapping[str, Any]) -> str:
    """`current_hash` of a stored record or bare body (unhashed keys are ignored)."""
    body = {k: v for k, v in record.items() if k not in UNHASHED_KEYS}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _refuse_floats(value: Any) -> None:
    if isinstance(value, float):
        raise ValueError("floats have no canonical form here")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("object keys must be strings")
            _refuse_floats(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _refuse_floats(item)
