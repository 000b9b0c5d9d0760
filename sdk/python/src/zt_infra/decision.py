"""Decision objects and the checks that make an answer a decision.

A `Decision` is a `dict` (so code written against the reference adapters, which index
`decision["decision"]`, keeps working) with typed read-only attributes named as the contract
names its fields.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import unicodedata
from typing import Any, Dict, Mapping, Optional

from . import strict_json
from .canonical import canonical_json, record_hash
from .errors import ControlPlaneStatusError, EvidenceError, MalformedDecision

#: The contract's top-level decision fields that enter the hashed record.
_HASHED_TOP = ("actor", "action", "resource", "decision", "reason")
#: The `audit` object has exactly these keys.
_AUDIT_KEYS = frozenset({"timestamp", "previous_hash", "current_hash", "kms_signature"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
#: Keys `evidence` may not carry: they already have a place in the hashed record.
_RESERVED = frozenset(_HASHED_TOP) | _AUDIT_KEYS | {"ok", "audit", "evidence"}
#: How much of an unexpected body an error message quotes.
_EXCERPT = 300


class Decision(Dict[str, Any]):
    """An answer of `POST /actions` that passed every check, or a local fail-closed deny."""

    @property
    def ok(self) -> bool:
        return self.get("ok") is True

    @property
    def allowed(self) -> bool:
        """True only for a verified `allow`."""
        return self.get("decision") == "allow" and self.get("ok") is True

    @property
    def decision(self) -> str:
        return str(self.get("decision", "deny"))

    @property
    def reason(self) -> str:
        return str(self.get("reason", ""))

    @property
    def actor(self) -> str:
        return str(self.get("actor", ""))

    @property
    def action(self) -> str:
        return str(self.get("action", ""))

    @property
    def resource(self) -> str:
        return str(self.get("resource", ""))

    @property
    def audit(self) -> Optional[Dict[str, Any]]:
        """The contract's audit envelope; `None` on a local deny (nothing was logged)."""
        value = self.get("audit")
        return value if isinstance(value, dict) else None

    @property
    def evidence(self) -> Optional[Dict[str, Any]]:
        """The hashed extension fields (`seq`, `policies`, `request_id`, ...)."""
        value = self.get("evidence")
        return value if isinstance(value, dict) else None


class GuardedResult(Decision):
    """A decision plus what happened to the protected work (`execution_skipped`, `result`)."""

    @property
    def execution_skipped(self) -> bool:
        return self.get("execution_skipped") is not False

    @property
    def result(self) -> Any:
        return self.get("result")

    @property
    def error(self) -> Optional[str]:
        """Why no decision was obtained, when the skip was a fail-closed error."""
        value = self.get("error")
        return value if isinstance(value, str) else None


def local_deny(actor: Optional[str], action: str, resource: str, reason: str) -> Decision:
    """A deny made on the client because no trustworthy decision was obtained. It has no
    `audit` (nothing was logged) and carries the cause in `error`."""
    return Decision(
        ok=False,
        actor=actor or "",
        action=action,
        resource=resource,
        decision="deny",
        reason=reason,
        audit=None,
        evidence=None,
        error=reason,
    )


def parse_answer(status: int, body: bytes, *, request_id: Optional[str]) -> Decision:
    """Checks a `POST /actions` answer against the contract; raises on anything else.

    The status must be 200 or 403 and agree with `decision` and `ok`; the body must be exactly
    typed JSON; `audit` must have exactly its four keys; `evidence` must be present, echo the
    request id sent, and `audit.current_hash` must recompute from the answer's own fields.
    """
    if status not in (200, 403):
        raise ControlPlaneStatusError(status, _excerpt(body))
    return _check_answer(_loads(body), status=status, request_id=request_id)


def check_foreign_answer(answer: Any) -> Decision:
    """Checks what a reference-style control-plane object's `decide` returned (a mapping, no
    HTTP status) as `parse_answer` checks a body: the same JSON, types, `audit`, `evidence` and
    recomputed `current_hash`, so a reference mock's `{"ok": true, "decision": "allow"}` (no
    evidence) is refused. It was sent no request id, so none is compared."""
    if not isinstance(answer, Mapping):
        raise MalformedDecision("the answer is not a decision object")
    try:
        body = json.dumps(dict(answer), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as error:
        raise MalformedDecision(f"the answer is not JSON: {error}") from error
    return _check_answer(_loads(body), status=None, request_id=None)


def _check_answer(data: Any, *, status: Optional[int], request_id: Optional[str]) -> Decision:
    """`parse_answer`'s checks of the decoded answer; `status` None: there was no HTTP status."""
    if not isinstance(data, dict):
        raise MalformedDecision("the answer is not a JSON object")
    ok = data.get("ok")
    if not isinstance(ok, bool):
        raise MalformedDecision("`ok` is missing or not a boolean")
    for key in _HASHED_TOP:
        if not isinstance(data.get(key), str):
            raise MalformedDecision(f"`{key}` is missing or not a string")
    verdict = data["decision"]
    if verdict not in ("allow", "deny"):
        raise MalformedDecision(f"`decision` is `{verdict}`, not allow or deny")
    if ok != (verdict == "allow") or (status is not None and (status == 200) != (verdict == "allow")):
        said = f"status {status}, ok {ok}" if status is not None else f"ok {ok}"
        raise MalformedDecision(f"{said} and decision `{verdict}` disagree")
    if not data["reason"].strip():
        raise MalformedDecision("`reason` is empty")
    audit = _check_audit(data.get("audit"))
    evidence = _check_evidence(data.get("evidence"))
    if request_id is not None and evidence.get("request_id") != request_id:
        raise EvidenceError("the answer does not echo this request's `request_id`")
    body_fields: Dict[str, Any] = {key: data[key] for key in _HASHED_TOP}
    body_fields["timestamp"] = audit["timestamp"]
    body_fields["previous_hash"] = audit["previous_hash"]
    body_fields.update(evidence)
    try:
        recomputed = record_hash(body_fields)
    except (ValueError, UnicodeEncodeError) as error:
        raise EvidenceError(f"the answer's record cannot be hashed: {error}") from error
    if not hmac.compare_digest(recomputed, audit["current_hash"]):
        raise EvidenceError("`audit.current_hash` does not match the answer's fields")
    return Decision(data)


def check_answers_request(
    decision: Decision,
    *,
    actor: Optional[str],
    action: str,
    resource: str,
    context: Optional[Mapping[str, Any]],
) -> None:
    """Raises unless `decision` decides the request sent: its signature and hash prove it
    genuine, not that it answers this request (someone on the path who rewrote the request and
    kept its `request_id` would get a genuine allow of something harmless).

    The action (its ASCII letters folded to lower case, as the control plane folds and answers
    it), the resource (in NFC, as the control plane stores it) and the context's digest
    must be the ones sent, and an allow must name the actor the request named. A context holding
    floats has no canonical form here, so its digest is not compared.
    """

    def other(what: str) -> EvidenceError:
        return EvidenceError(f"the answer decides another {what} than the one asked")

    if decision.action != fold_action(action):
        raise other("action")
    if decision.resource != unicodedata.normalize("NFC", resource):
        raise other("resource")
    evidence = decision.evidence or {}
    if context is None:
        if evidence.get("context_sha256") is not None:
            raise other("context")
    else:
        try:
            digest: Optional[str] = hashlib.sha256(canonical_json(dict(context))).hexdigest()
        except ValueError:
            digest = None
        if digest is not None and evidence.get("context_sha256") != digest:
            raise other("context")
    # This client sends no resource attributes: an answer deciding some answers another request.
    if evidence.get("resource_attributes_sha256") is not None:
        raise other("resource attributes")
    if actor and decision.allowed and decision.actor != actor:
        raise other("actor")


def fold_action(action: str) -> str:
    """`action` as the control plane decides and answers it: ASCII `A`-`Z` folded to lower case,
    nothing else changed (zt-contract `ActionName::parse`; no Unicode case folding, which would
    make `\u212a`, the Kelvin sign, a `k`). An action outside the grammar is refused by the
    control plane anyway."""
    return action.translate(_ASCII_LOWER)


_ASCII_LOWER = {code: code + 32 for code in range(ord("A"), ord("Z") + 1)}


def _check_audit(audit: Any) -> Dict[str, Any]:
    if not isinstance(audit, dict):
        raise EvidenceError("`audit` is missing or not an object")
    if set(audit) != _AUDIT_KEYS:
        raise EvidenceError("`audit` must have exactly timestamp, previous_hash, current_hash, kms_signature")
    if not isinstance(audit["timestamp"], str) or not audit["timestamp"]:
        raise EvidenceError("`audit.timestamp` is missing or not a string")
    for key in ("previous_hash", "current_hash"):
        value = audit[key]
        if not isinstance(value, str) or not _HEX64.fullmatch(value):
            raise EvidenceError(f"`audit.{key}` is not 64 lowercase hex digits")
    signature = audit["kms_signature"]
    if not isinstance(signature, dict):
        raise EvidenceError("`audit.kms_signature` is not an object")
    for key in ("algorithm", "key_id", "signature"):
        if not isinstance(signature.get(key), str):
            raise EvidenceError(f"`audit.kms_signature.{key}` is missing or not a string")
    return audit


def _check_evidence(evidence: Any) -> Dict[str, Any]:
    if not isinstance(evidence, dict):
        raise EvidenceError("`evidence` is missing or not an object")
    clash = sorted(_RESERVED.intersection(evidence))
    if clash:
        raise EvidenceError(f"`evidence` repeats `{clash[0]}`")
    if evidence.get("kind") != "decision":
        raise EvidenceError("`evidence.kind` is not `decision`")
    seq = evidence.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise EvidenceError("`evidence.seq` is missing or not a non-negative integer")
    if not isinstance(evidence.get("authenticated"), bool):
        raise EvidenceError("`evidence.authenticated` is missing or not a boolean")
    return evidence


def _loads(body: bytes) -> Any:
    try:
        return strict_json.loads(body)
    except ValueError as error:
        raise MalformedDecision(f"the answer is not valid JSON: {error}") from error


def _excerpt(body: bytes) -> str:
    return body[:_EXCERPT].decode("utf-8", errors="replace")
