"""`AsyncControlPlaneClient`: the same client for asyncio code.

Each exchange runs the blocking client in a worker thread (`asyncio.to_thread`), so the
event loop never blocks and the same checks and deadline apply.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Awaitable, Callable, Dict, Mapping, Optional, TypeVar, Union

from .client import ControlPlaneClient
from .decision import Decision, GuardedResult

T = TypeVar("T")


class AsyncControlPlaneClient:
    """Takes the same arguments as `ControlPlaneClient` (or wraps one with `sync=`)."""

    def __init__(
        self, base_url: Optional[str] = None, *, sync: Optional[ControlPlaneClient] = None, **kwargs: Any
    ) -> None:
        self.sync = sync if sync is not None else ControlPlaneClient(base_url, **kwargs)

    @property
    def actor(self) -> Optional[str]:
        return self.sync.actor

    async def decide(
        self,
        actor: Optional[str] = None,
        action: Optional[str] = None,
        resource: Optional[str] = None,
        *,
        context: Optional[Mapping[str, Any]] = None,
        request_id: Optional[str] = None,
    ) -> Decision:
        return await asyncio.to_thread(
            self.sync.decide, actor, action, resource, context=context, request_id=request_id
        )

    async def decide_or_deny(
        self,
        actor: Optional[str],
        action: str,
        resource: Optional[str] = None,
        *,
        context: Optional[Mapping[str, Any]] = None,
        request_id: Optional[str] = None,
    ) -> Decision:
        return await asyncio.to_thread(
            self.sync.decide_or_deny, actor, action, resource, context=context, request_id=request_id
        )

    async def guarded_call(
        self,
        action: str,
        resource: Optional[str] = None,
        fn: Optional[Callable[[], Union[T, Awaitable[T]]]] = None,
        *,
        actor: Optional[str] = None,
        context: Optional[Mapping[str, Any]] = None,
        request_id: Optional[str] = None,
    ) -> GuardedResult:
        """Like `ControlPlaneClient.guarded_call`; `fn` may be a coroutine function."""
        if fn is None:
            raise TypeError("guarded_call needs `fn`, the protected work")
        decision = await self.decide_or_deny(actor, action, resource, context=context, request_id=request_id)
        if not decision.allowed:
            return GuardedResult(decision, execution_skipped=True)
        result = fn()
        if inspect.isawaitable(result):
            result = await result
        return GuardedResult(decision, execution_skipped=False, result=result)

    async def audit_keys(self) -> Dict[str, Any]:
        return await asyncio.to_thread(self.sync.audit_keys)
