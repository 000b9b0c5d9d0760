"""The client against the real `zt serve`: decisions verify (hash and pinned signature), denies
and refusals leave the work unrun."""

from __future__ import annotations

import uuid
from typing import Any, Dict

import pytest
from fake_control_plane import SigningKey
from zt_server import ZtServer

from zt_infra import (
    AsyncControlPlaneClient,
    ControlPlaneClient,
    ControlPlaneStatusError,
    EvidenceError,
    InvalidRequest,
    PinnedKeys,
)
from zt_infra.transport import urlopen_transport

AUDIT_KEYS = {"timestamp", "previous_hash", "current_hash", "kms_signature"}


@pytest.fixture(scope="module")
def agent(zt: ZtServer) -> ControlPlaneClient:
    token = zt.register("py-live-agent")
    zt.allow("py.live.read", "reading is harmless")
    keys = ControlPlaneClient(zt.url).audit_keys()
    return ControlPlaneClient(zt.url, actor="py-live-agent", token=token, pinned_keys=keys, timeout=30)


def test_allow_and_deny_verify_with_pinned_keys(agent: ControlPlaneClient) -> None:
    ran = []
    allowed = agent.guarded_call(action="py.live.read", resource="r1", fn=lambda: ran.append(1) or "read")
    denied = agent.guarded_call(action="py.live.delete", resource="r1", fn=lambda: ran.append(2))
    assert ran == [1]
    assert allowed.decision == "allow" and allowed.result == "read" and not allowed.execution_skipped
    assert denied.decision == "deny" and denied.execution_skipped and denied.error is None
    assert denied.reason == "action is not in the allow list"
    for decision in (allowed, denied):
        assert set(decision.audit or {}) == AUDIT_KEYS
        assert (decision.evidence or {})["kind"] == "decision"
        assert (decision.evidence or {})["authenticated"] is True


def test_hash_recomputes_for_non_ascii_and_control_characters(zt: ZtServer, agent: ControlPlaneClient) -> None:
    """The server's JSON escaping and ours agree byte for byte (else decide would raise): non-ASCII
    and JSON's escapes in the resource, control characters in a policy's reason (resources may not
    hold them)."""
    reason = 'why: \u0001\u0007\u001f\t\n\r"\\/ \u2028 é€😀'
    zt.allow("py.live.escapes", reason)
    resource = 'é€😀 "\\/ x'
    decision = agent.decide(action="py.live.escapes", resource=resource, context={"k": "ü\u0000"})
    assert decision.decision == "allow" and decision.reason == reason
    assert decision.resource == resource
    assert (decision.evidence or {}).get("context_sha256")


def test_a_resource_with_control_characters_is_refused_and_nothing_runs(agent: ControlPlaneClient) -> None:
    with pytest.raises(ControlPlaneStatusError) as refused:
        agent.decide(action="py.live.read", resource="r\u0001")
    assert refused.value.status == 400
    ran = []
    result = agent.guarded_call(action="py.live.read", resource="r\u0001", fn=lambda: ran.append(1))
    assert ran == [] and result.execution_skipped and result.error is not None


def test_a_claimed_actor_that_is_not_the_token_is_denied(zt: ZtServer, agent: ControlPlaneClient) -> None:
    ran = []
    result = agent.guarded_call(action="py.live.read", resource="r1", actor="someone-else", fn=lambda: ran.append(1))
    assert ran == [] and result.decision == "deny" and "someone-else" in result.reason


def test_no_token_is_a_401_and_nothing_runs(zt: ZtServer) -> None:
    client = ControlPlaneClient(zt.url, actor="py-live-agent", token="")
    with pytest.raises(ControlPlaneStatusError) as raised:
        client.decide(action="py.live.read")
    assert raised.value.status == 401
    ran = []
    assert client.guarded_call(action="py.live.read", fn=lambda: ran.append(1)).execution_skipped and ran == []


def test_a_replayed_request_id_is_refused(agent: ControlPlaneClient) -> None:
    nonce = uuid.uuid4().hex
    assert agent.decide(action="py.live.read", request_id=nonce).allowed
    with pytest.raises(ControlPlaneStatusError) as raised:
        agent.decide(action="py.live.read", request_id=nonce)
    assert raised.value.status == 409


def test_keys_pinned_from_elsewhere_refuse_the_servers_signatures(zt: ZtServer, agent: ControlPlaneClient) -> None:
    other = ControlPlaneClient(
        zt.url, actor="py-live-agent", token=agent._token, pinned_keys=PinnedKeys(SigningKey().jwks(kid="zt-p256-x"))
    )
    with pytest.raises(EvidenceError):
        other.decide(action="py.live.read")
    ran = []
    assert other.guarded_call(action="py.live.read", fn=lambda: ran.append(1)).execution_skipped and ran == []


def test_reference_style_transport_passes_the_timeout_as_a_timeout(zt: ZtServer, agent: ControlPlaneClient) -> None:
    """The reference client called `urlopen(request, timeout)`, which sends the timeout as the
    request body; ours passes it by keyword, so the decision goes through."""
    client = ControlPlaneClient(
        zt.url, actor="py-live-agent", token=agent._token, timeout_seconds=30, transport=urlopen_transport
    )
    assert client.decide(action="py.live.read").allowed
    assert client.decide(action="py.live.delete").decision == "deny"


async def test_async_client(agent: ControlPlaneClient) -> None:
    client = AsyncControlPlaneClient(sync=agent)
    ran = []

    async def work() -> str:
        ran.append(1)
        return "async-read"

    allowed = await client.guarded_call(action="py.live.read", resource="r1", fn=work)
    denied = await client.guarded_call(action="py.live.delete", resource="r1", fn=work)
    assert ran == [1] and allowed.result == "async-read" and denied.execution_skipped


def test_an_action_asked_in_upper_case_is_answered_folded_and_accepted(agent: ControlPlaneClient) -> None:
    """The control plane folds an action's ASCII letters to lower case and answers it folded;
    the answer check compared it unfolded, so every such decision raised `EvidenceError`."""
    ran = []
    result = agent.guarded_call(action="py.live.READ", resource="r1", fn=lambda: ran.append(1) or "read")
    assert ran == [1] and result.allowed and result.action == "py.live.read"
    assert agent.decide(action="Py.Live.Delete").action == "py.live.delete"


def test_a_request_nested_as_deep_as_the_control_plane_takes_is_sent_and_one_deeper_is_not(
    agent: ControlPlaneClient,
) -> None:
    """The body is level 1 and the control plane takes 32 levels (zt-contract `MAX_DEPTH`)."""

    def nested(levels: int) -> Dict[str, Any]:
        context: Dict[str, Any] = {}
        for _ in range(levels - 1):
            context = {"k": context}
        return context

    # The body (level 1) holding 31 levels of context: 32, the limit, still sent and decided.
    assert agent.decide(action="py.live.read", context=nested(31)).audit is not None
    with pytest.raises(InvalidRequest, match="nested more than 32 levels"):
        agent.decide(action="py.live.read", context=nested(32))
    # Far deeper than Python's recursion limit: refused locally too, never a `RecursionError`.
    ran = []
    result = agent.guarded_call(action="py.live.read", context=nested(50_000), fn=lambda: ran.append(1))
    assert ran == [] and result.execution_skipped and "nested more than" in (result.error or "")
