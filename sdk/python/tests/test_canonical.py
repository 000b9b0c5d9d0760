"""Canonical JSON and record hashing agree with the contract's golden vector."""

from __future__ import annotations

import json

import pytest
from zt_server import REPO_ROOT

from zt_infra import canonical_json, record_hash

GOLDEN = REPO_ROOT / "crates" / "zt-contract" / "tests" / "vectors" / "contract_golden.json"


def test_golden_vector() -> None:
    vector = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert canonical_json(vector["body"]).decode() == vector["canonical"]
    assert record_hash(vector["body"]) == vector["current_hash"]


def test_escaping_matches_the_server_writer() -> None:
    # The same string and expectation as the server's canonical_json unit test.
    value = {"s": 'q"b\\\u0008\u000c\n\r\t\u0001\u001fé€😀/'}
    assert canonical_json(value).decode() == '{"s":"q\\"b\\\\\\b\\f\\n\\r\\t\\u0001\\u001fé€😀/"}'


def test_unhashed_keys_are_ignored_and_floats_refused() -> None:
    assert record_hash({"a": 1, "current_hash": "x", "kms_signature": {}}) == record_hash({"a": 1})
    with pytest.raises(ValueError):
        canonical_json({"a": 1.5})
