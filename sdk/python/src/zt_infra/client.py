"""`ControlPlaneClient`: ask `POST /actions` before protected work, and fail closed."""

from __future__ import annotations

import json
import os
import ssl
import urllib.request
import uuid
from typing import Any, Callable, Dict, Mapping, Optional, TypeVar, Union
from urllib.parse import urlsplit

from . import strict_json
from . import transport as _transport
from .decision import (
    Decision,
    GuardedResult,
    check_answers_request,
    check_foreign_answer,
    local_deny,
    parse_answer,
)
from .errors import ControlPlaneError, ControlPlaneStatusError, InvalidRequest, MalformedDecision
from .issued import ISSUED
from .verify import PinnedKeys

#: Used when neither `base_url` nor `ZT_CONTROL_PLANE_URL` is given.
DEFAULT_URL = "http://127.0.0.1:3000"
#: Seconds for one whole exchange (look the name up, connect, send, read the answer).
DEFAULT_TIMEOUT = 5.0

T = TypeVar("T")


class ControlPlaneClient:
    """A client of one control plane.

    Defaults come from `ZT_CONTROL_PLANE_URL`, `ZT_ACTOR` and `ZT_TOKEN`. `decide` returns a
    `Decision` only when the answer is complete and consistent (see `parse_answer`); anything
    else raises a `ControlPlaneError`. A deny (403) is a decision, not an error.

    `timeout_seconds` and `transport` keep the reference client's keywords working.
    `pinned_keys` (a JWKS mapping, a path to one, or `PinnedKeys`) makes every decision's
    signature checked as well.
    """

    def __init__(
        self,
        base_url: Optional[str] = None,
        *,
        actor: Optional[str] = None,
        token: Optional[str] = None,
        timeout: Optional[float] = None,
        timeout_seconds: Optional[float] = None,
        pinned_keys: Union[PinnedKeys, Mapping[str, Any], str, os.PathLike[str], None] = None,
        send_request_id: bool = True,
        transport: Optional[_transport.Transport] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
        max_response_bytes: int = _transport.MAX_RESPONSE_BYTES,
    ) -> None:
        url = base_url or os.environ.get("ZT_CONTROL_PLANE_URL") or DEFAULT_URL
        self.base_url = url.rstrip("/")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"invalid control plane URL `{url}`: expected http(s)://host[:port][/prefix]")
        self.actor = actor if actor is not None else (os.environ.get("ZT_ACTOR") or None)
        self._token = token if token is not None else (os.environ.get("ZT_TOKEN") or None)
        chosen = timeout if timeout is not None else timeout_seconds
        self.timeout = float(chosen) if chosen is not None else DEFAULT_TIMEOUT
        if not self.timeout > 0:
            raise ValueError("timeout must be positive")
        self.pinned_keys = _pinned(pinned_keys)
        self.send_request_id = send_request_id
        self.transport = transport
        self._ssl_context = ssl_context
        self._max_bytes = max_response_bytes

    @property
    def timeout_seconds(self) -> float:
        """The reference client's name for `timeout`."""
        return self.timeout

    def __repr__(self) -> str:
        # Never the token.
        return f"ControlPlaneClient(base_url={self.base_url!r}, actor={self.actor!r})"

    def decide(
        self,
        actor: Optional[str] = None,
        action: Optional[str] = None,
        resource: Optional[str] = None,
        *,
        context: Optional[Mapping[str, Any]] = None,
        request_id: Optional[str] = None,
    ) -> Decision:
        """May `actor` (default: the client's, else the token's) take `action` on `resource`?"""
        if not isinstance(action, str) or not action.strip():
            raise InvalidRequest("action is required")
        who = actor if actor is not None else self.actor
        payload: Dict[str, Any] = {"action": action, "resource": resource or ""}
        if who:
            payload["actor"] = who
        if context is not None:
            payload["context"] = dict(context)
        nonce = request_id if request_id is not None else (uuid.uuid4().hex if self.send_request_id else None)
        if nonce is not None:
            payload["request_id"] = nonce
        if strict_json.too_deep(payload):
            raise InvalidRequest(
                f"the request is nested more than {strict_json.MAX_DEPTH} levels deep (the control plane's limit)"
            )
        try:
            body = json.dumps(payload, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as error:
            raise InvalidRequest(f"the request is not JSON: {error}") from error
        answer = self._send("POST", "/actions", body)
        decision = parse_answer(answer.status, answer.body, request_id=nonce)
        check_answers_request(
            decision, actor=who, action=action, resource=payload["resource"], context=payload.get("context")
        )
        if self.pinned_keys is not None:
            audit = decision.audit
            if audit is None:  # parse_answer guarantees it; kept for the type checker
                raise MalformedDecision("`audit` is missing")
            self.pinned_keys.verify(audit)
        # Every check passed: gates that read decisions from shared state may now trust it.
        ISSUED.remember(decision)
        return decision

    def guarded_call(
        self,
        action: str,
        resource: Optional[str] = None,
        fn: Optional[Callable[[], T]] = None,
        *,
        actor: Optional[str] = None,
        context: Optional[Mapping[str, Any]] = None,
        request_id: Optional[str] = None,
    ) -> GuardedResult:
        """Runs `fn()` only on a verified allow. Never raises for control-plane failures: they
        come back as a deny with `execution_skipped` true and the cause in `error` and `reason`.
        Exceptions raised by `fn` itself propagate (the work did run)."""
        if fn is None:
            raise TypeError("guarded_call needs `fn`, the protected work")
        decision = self.decide_or_deny(actor, action, resource, context=context, request_id=request_id)
        if not decision.allowed:
            return GuardedResult(decision, execution_skipped=True)
        result = fn()
        return GuardedResult(decision, execution_skipped=False, result=result)

    def decide_or_deny(
        self,
        actor: Optional[str],
        action: str,
        resource: Optional[str] = None,
        *,
        context: Optional[Mapping[str, Any]] = None,
        request_id: Optional[str] = None,
    ) -> Decision:
        """`decide`, with every failure turned into a local deny (for adapters)."""
        try:
            return self.decide(actor, action, resource, context=context, request_id=request_id)
        except ControlPlaneError as error:
            return local_deny(actor or self.actor, str(action), resource or "", fail_closed_reason(error))

    def audit_keys(self) -> Dict[str, Any]:
        """The published JWKS (`GET /audit/keys`). Save it somewhere trusted to pin it."""
        answer = self._send("GET", "/audit/keys", None)
        if answer.status != 200:
            raise ControlPlaneStatusError(answer.status, answer.body[:300].decode("utf-8", "replace"))
        try:
            jwks = strict_json.loads(answer.body)
        except ValueError as error:
            raise MalformedDecision(f"the JWKS is not valid JSON: {error}") from error
        if not isinstance(jwks, dict):
            raise MalformedDecision("the JWKS is not a JSON object")
        return jwks

    def _headers(self) -> Dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if self._token:
            headers["authorization"] = f"Bearer {self._token}"
        return headers

    def _send(self, method: str, path: str, body: Optional[bytes]) -> _transport.Answer:
        url = f"{self.base_url}{path}"
        if self.transport is not None:
            request = urllib.request.Request(url, data=body, headers=self._headers(), method=method)
            return _transport.via_transport(self.transport, request, self.timeout, max_bytes=self._max_bytes)
        return _transport.exchange(
            method,
            url,
            body,
            self._headers(),
            self.timeout,
            max_bytes=self._max_bytes,
            ssl_context=self._ssl_context,
        )


def decide_fail_closed(
    control_plane: Any, actor: Optional[str], action: str, resource: str, context: Optional[Mapping[str, Any]] = None
) -> Decision:
    """A decision from our client (every failure a local deny) or from any reference-style
    client with `decide(actor, action, resource=...)`: any exception it raises, and any answer
    that fails the checks our client makes (`check_foreign_answer`: shape, audit, evidence,
    recomputed hash; `check_answers_request`: the action and resource asked and, for an allow,
    the actor), is a local deny. It is sent no context, so its answer must decide none."""
    sync = getattr(control_plane, "sync", None)
    if isinstance(sync, ControlPlaneClient):
        control_plane = sync
    if isinstance(control_plane, ControlPlaneClient):
        return control_plane.decide_or_deny(actor, action, resource, context=context)
    try:
        answer = control_plane.decide(actor, action, resource=resource)
    except Exception as error:  # a foreign client's failure, whatever it is: fail closed
        return local_deny(actor, action, resource, f"no decision from the control plane, not run: {error}")
    try:
        decision = check_foreign_answer(answer)
        check_answers_request(decision, actor=actor, action=action, resource=resource, context=None)
    except ControlPlaneError as error:
        return local_deny(actor, action, resource, fail_closed_reason(error))
    return decision


def fail_closed_reason(error: ControlPlaneError) -> str:
    """The deny reason given when no decision could be obtained."""
    return f"no decision from the control plane, not run: {error}"


def _pinned(value: Union[PinnedKeys, Mapping[str, Any], str, "os.PathLike[str]", None]) -> Optional[PinnedKeys]:
    if value is None or isinstance(value, PinnedKeys):
        return value
    if isinstance(value, Mapping):
        return PinnedKeys(value)
    return PinnedKeys.from_file(value)
