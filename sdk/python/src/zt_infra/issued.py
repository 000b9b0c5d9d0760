"""The allows this process's clients received and verified, so a gate can tell them from copies.

A LangGraph gate reads its decision from the graph's state, and anything else in the graph
(another node, a tool's output merged into state, a model-steered update) can write there. A
dict saying `{"decision": "allow", "ok": True}` proves nothing. A `ControlPlaneClient` records
here each allow that passed its checks (shape, recomputed hash, bound to the request sent,
pinned signature if any): its `audit.current_hash`, with a digest of its actor, action,
resource and sequence number, so a copy relabelled for anything else does not match.

Process-wide, thread-safe, and bounded: the least recently used entries go first once
`MAX_ISSUED` allows are held, so an allow that old is refused by a gate (fail closed) rather
than memory growing without limit. Nothing here survives the process: an allow restored from a
checkpoint written by another process is not in it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any, Mapping, NamedTuple, Optional

from .decision import _HEX64

#: How many allows are remembered: under 20 MiB when full, whatever the names' lengths.
MAX_ISSUED = 65_536


class Issued(NamedTuple):
    """What an allow was decided for; a copy relabelled for anything else does not match."""

    actor: str
    action: str
    resource: str
    seq: Optional[int]


class IssuedAllows:
    """`current_hash` -> digest of its `Issued`, least recently used dropped first past
    `capacity`. Digests, not the names, so an entry's size does not depend on them."""

    def __init__(self, capacity: int = MAX_ISSUED) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._entries: OrderedDict[bytes, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def remember(self, decision: Mapping[str, Any]) -> None:
        """Records a verified allow; the caller vouches that its checks passed. Anything that
        is not an allow with an `audit.current_hash` is ignored."""
        current_hash = _current_hash(decision)
        issued = _issued(decision)
        if current_hash is None or issued is None:
            return
        if decision.get("decision") != "allow" or decision.get("ok") is not True:
            return
        with self._lock:
            self._entries[current_hash] = _digest(issued)
            self._entries.move_to_end(current_hash)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def lookup(self, decision: Mapping[str, Any]) -> Optional[Issued]:
        """What `decision` was issued for, if it carries the hash of a remembered allow and
        names the same actor, action, resource and sequence number; else `None`.

        Callers check the returned values, never the mapping again: it is read once here, so
        a mapping that answers differently on a second read gains nothing.
        """
        current_hash = _current_hash(decision)
        claimed = _issued(decision)
        if current_hash is None or claimed is None:
            return None
        with self._lock:
            recorded = self._entries.get(current_hash)
            if recorded is None:
                return None
            self._entries.move_to_end(current_hash)
        return claimed if recorded == _digest(claimed) else None


#: The one registry every client of this process records into.
ISSUED = IssuedAllows()


def _current_hash(decision: Mapping[str, Any]) -> Optional[bytes]:
    audit = decision.get("audit")
    value = audit.get("current_hash") if isinstance(audit, Mapping) else None
    # Exact types only: a str subclass could define its own equality and match anything.
    if type(value) is not str or not _HEX64.fullmatch(value):
        return None
    return bytes.fromhex(value)


def _issued(decision: Mapping[str, Any]) -> Optional[Issued]:
    actor, action, resource = (decision.get(key) for key in ("actor", "action", "resource"))
    if type(actor) is not str or type(action) is not str or type(resource) is not str:
        return None
    evidence = decision.get("evidence")
    seq = evidence.get("seq") if isinstance(evidence, Mapping) else None
    return Issued(actor, action, resource, seq if type(seq) is int else None)


def _digest(issued: Issued) -> bytes:
    # JSON of exact str/int/None values: one text per tuple, so equal digests mean equal fields.
    return hashlib.sha256(json.dumps(list(issued)).encode("utf-8")).digest()
