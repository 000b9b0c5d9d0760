"""The real control-plane client, noting each decision an adapter asks it for."""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Tuple

from zt_infra import ControlPlaneClient, Decision


class RecordingClient(ControlPlaneClient):
    """`asked` holds `(action, resource, context)` for every decision requested: a call refused
    before any decision leaves it unchanged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asked: List[Tuple[str, str, Any]] = []

    def decide_or_deny(
        self,
        actor: Optional[str],
        action: str,
        resource: Optional[str] = None,
        *,
        context: Optional[Mapping[str, Any]] = None,
        request_id: Optional[str] = None,
    ) -> Decision:
        self.asked.append((action, resource or "", context))
        return super().decide_or_deny(actor, action, resource, context=context, request_id=request_id)
