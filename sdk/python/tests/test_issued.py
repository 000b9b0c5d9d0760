"""The registry of verified allows: bounded, least recently used first out, exact matches only."""

from __future__ import annotations

import threading
from typing import Any, Dict, List

import pytest

from zt_infra.issued import ISSUED, MAX_ISSUED, Issued, IssuedAllows


def allow(n: int, **changes: Any) -> Dict[str, Any]:
    decision: Dict[str, Any] = {
        "ok": True,
        "decision": "allow",
        "actor": "agent",
        "action": f"act.{n}",
        "resource": "r",
        "reason": "allowed",
        "audit": {"current_hash": f"{n:064x}"},
        "evidence": {"seq": n},
    }
    decision.update(changes)
    return decision


def test_the_process_registry_is_bounded_at_65536() -> None:
    assert MAX_ISSUED == 65_536 and ISSUED.capacity == MAX_ISSUED
    registry = IssuedAllows()
    for n in range(MAX_ISSUED + 1000):
        registry.remember(allow(n))
    assert len(registry) == MAX_ISSUED
    assert registry.lookup(allow(999)) is None  # the oldest went first
    assert registry.lookup(allow(1000)) == Issued("agent", "act.1000", "r", 1000)


def test_least_recently_used_goes_first() -> None:
    registry = IssuedAllows(capacity=2)
    registry.remember(allow(1))
    registry.remember(allow(2))
    assert registry.lookup(allow(1)) is not None  # 1 is now the most recently used
    registry.remember(allow(3))
    assert len(registry) == 2
    assert registry.lookup(allow(2)) is None
    assert registry.lookup(allow(1)) is not None and registry.lookup(allow(3)) is not None


def test_only_allows_are_remembered() -> None:
    registry = IssuedAllows(capacity=8)
    registry.remember(allow(1, decision="deny", ok=False))
    registry.remember(allow(2, ok=False))
    registry.remember(allow(3, audit=None))
    registry.remember(allow(4, action=None))
    assert len(registry) == 0


@pytest.mark.parametrize(
    "changes",
    [
        {"action": "act.2"},
        {"actor": "someone-else"},
        {"resource": "other"},
        {"evidence": {"seq": 2}},
        {"evidence": None},
        {"audit": {"current_hash": f"{2:064x}"}},
    ],
    ids=["action", "actor", "resource", "seq", "no evidence", "hash"],
)
def test_a_copy_changed_in_any_bound_field_does_not_match(changes: Dict[str, Any]) -> None:
    registry = IssuedAllows(capacity=8)
    registry.remember(allow(1))
    assert registry.lookup(allow(1, **changes)) is None


def test_lookalike_strings_do_not_match() -> None:
    class Anything(str):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = str.__hash__

    registry = IssuedAllows(capacity=8)
    registry.remember(allow(1))
    assert registry.lookup(allow(1, action=Anything("act.other"))) is None
    assert registry.lookup(allow(1, audit={"current_hash": Anything(f"{1:064x}")})) is None


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        IssuedAllows(capacity=0)


def test_concurrent_use_stays_within_the_bound() -> None:
    registry = IssuedAllows(capacity=100)
    errors: List[BaseException] = []

    def work(offset: int) -> None:
        try:
            for n in range(offset, offset + 2000):
                registry.remember(allow(n))
                registry.lookup(allow(n - 1))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k * 10_000,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(registry) == 100
