"""Why no decision could be obtained. Every error means: do not run the protected work."""

from __future__ import annotations


class ControlPlaneError(RuntimeError):
    """The control plane could not give a decision that can be trusted (fail closed)."""


class ControlPlaneUnreachable(ControlPlaneError):
    """No connection, or the connection broke (refused, reset, truncated)."""


class ControlPlaneTimeout(ControlPlaneError):
    """No complete answer within the client's timeout."""


class ControlPlaneStatusError(ControlPlaneError):
    """A status the contract does not allow (only 200 allow and 403 deny are decisions)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"control plane answered {status}: {body}")
        self.status = status
        self.body = body


class MalformedDecision(ControlPlaneError):
    """The body is not the contract's decision (not JSON, wrong types, `ok` disagreeing...)."""


class EvidenceError(ControlPlaneError):
    """The audit evidence is missing or does not hold together (hash, signature, request id)."""


class InvalidRequest(ControlPlaneError):
    """The request cannot be sent as given (no action, context not JSON...)."""
