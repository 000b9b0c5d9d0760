"""Strict JSON for what the SDK reads from others: the control plane's answers, a model's tool
arguments, key sets. Python's `json` keeps the last of two equal keys and reads `NaN` and
`Infinity`; a reader elsewhere may keep the first or refuse them, so one text would mean two
things. Both are refused here, as the Rust side's `strict_json` refuses them."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Tuple, Union

#: Most nested objects and arrays the control plane accepts in a request body, the body itself
#: being level 1 (`strict_json::MAX_DEPTH` in zt-contract; docs/SECURITY.md).
MAX_DEPTH = 32


def loads(text: Union[str, bytes]) -> Any:
    """Parses `text` (UTF-8 if bytes); raises `ValueError` for invalid JSON, a key given twice
    in any object, `NaN`/`Infinity`, or nesting too deep to parse."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8: {error}") from error
    except RecursionError as error:
        raise ValueError("nested too deeply") from error


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether `value` nests dicts, lists and tuples more than `limit` levels deep (a container
    is one level; a scalar none). Iterative: any depth is measured without recursion, and a
    container that holds itself is too deep."""
    stack: List[Tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if level > limit:
            return True
        stack.extend((child, level + 1) for child in children)
    return False


def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key `{key}`")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"`{name}` is not JSON")
