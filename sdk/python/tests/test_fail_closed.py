"""The fail-closed matrix: every way a decision can be missing or untrustworthy raises from
`decide` and leaves the protected function unrun in `guarded_call`, sync and async."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Type

import pytest
from fake_control_plane import DELETE, FakeControlPlane, Reply, SigningKey, decision_body

from zt_infra import (
    AsyncControlPlaneClient,
    ControlPlaneClient,
    ControlPlaneError,
    ControlPlaneStatusError,
    ControlPlaneTimeout,
    ControlPlaneUnreachable,
    EvidenceError,
    InvalidRequest,
    MalformedDecision,
    PinnedKeys,
)
from zt_infra.issued import ISSUED
from zt_infra.transport import urlopen_transport

TIMEOUT = 1.0


@pytest.fixture
def fake() -> Iterator[FakeControlPlane]:
    server = FakeControlPlane()
    yield server
    server.close()


Behaviour = Callable[[FakeControlPlane, Dict[str, Any]], Reply]

# name -> (behaviour, expected error, whether the client pins the fake's key)
CASES: Dict[str, tuple[Behaviour, Type[ControlPlaneError], bool]] = {
    "status 500": (lambda f, r: Reply(500, {"ok": False, "error": "boom"}), ControlPlaneStatusError, False),
    "status 401": (
        lambda f, r: Reply(401, {"ok": False, "error": "authentication failed"}),
        ControlPlaneStatusError,
        False,
    ),
    "status 409 replay": (lambda f, r: Reply(409, decision_body(f.key, r, "deny")), ControlPlaneStatusError, False),
    "status 302": (
        lambda f, r: Reply(302, b"", headers={"location": "http://127.0.0.1:1/"}),
        ControlPlaneStatusError,
        False,
    ),
    "status 201 allow": (lambda f, r: Reply(201, decision_body(f.key, r)), ControlPlaneStatusError, False),
    "timeout": (
        lambda f, r: Reply(200, decision_body(f.key, r), mode="sleep", seconds=TIMEOUT * 3),
        ControlPlaneTimeout,
        False,
    ),
    "slow drip past the deadline": (
        lambda f, r: Reply(200, decision_body(f.key, r), mode="drip", seconds=0.05),
        ControlPlaneTimeout,
        False,
    ),
    "status line and headers dripped past the deadline": (
        lambda f, r: Reply(200, decision_body(f.key, r), mode="drip_head", seconds=0.02),
        ControlPlaneTimeout,
        False,
    ),
    "connection reset": (lambda f, r: Reply(mode="reset"), ControlPlaneUnreachable, False),
    "truncated body": (
        lambda f, r: Reply(200, decision_body(f.key, r), mode="truncate"),
        ControlPlaneUnreachable,
        False,
    ),
    "not json": (lambda f, r: Reply(200, b"<html>allow</html>"), MalformedDecision, False),
    "truncated json": (lambda f, r: Reply(200, b'{"ok": true, "decision": "allow"'), MalformedDecision, False),
    "json array": (lambda f, r: Reply(200, b"[]"), MalformedDecision, False),
    "not utf-8": (lambda f, r: Reply(200, b'{"ok": true, "reason": "\xff"}'), MalformedDecision, False),
    "NaN constant": (lambda f, r: Reply(200, b'{"ok": true, "seq": NaN}'), MalformedDecision, False),
    "duplicate decision key": (
        lambda f, r: Reply(200, b'{"ok": true, "decision": "deny", "decision": "allow"}'),
        MalformedDecision,
        False,
    ),
    "ok is a string": (lambda f, r: Reply(200, decision_body(f.key, r, ok="true")), MalformedDecision, False),
    "ok is 1": (lambda f, r: Reply(200, decision_body(f.key, r, ok=1)), MalformedDecision, False),
    "decision is a number": (lambda f, r: Reply(200, decision_body(f.key, r, decision=1)), MalformedDecision, False),
    "decision is ALLOW": (lambda f, r: Reply(200, decision_body(f.key, r, decision="ALLOW")), MalformedDecision, False),
    "reason is a list": (lambda f, r: Reply(200, decision_body(f.key, r, reason=["ok"])), MalformedDecision, False),
    "empty reason": (lambda f, r: Reply(200, decision_body(f.key, r, reason=" ")), MalformedDecision, False),
    "actor missing": (lambda f, r: Reply(200, decision_body(f.key, r, actor=DELETE)), MalformedDecision, False),
    "ok true on a deny": (lambda f, r: Reply(403, decision_body(f.key, r, "deny", ok=True)), MalformedDecision, False),
    "ok false on an allow": (lambda f, r: Reply(200, decision_body(f.key, r, ok=False)), MalformedDecision, False),
    "status 200 with a deny": (lambda f, r: Reply(200, decision_body(f.key, r, "deny")), MalformedDecision, False),
    "status 403 with an allow": (lambda f, r: Reply(403, decision_body(f.key, r)), MalformedDecision, False),
    "audit missing": (lambda f, r: Reply(200, decision_body(f.key, r, audit=DELETE)), EvidenceError, False),
    "audit is a string": (lambda f, r: Reply(200, decision_body(f.key, r, audit="logged")), EvidenceError, False),
    "audit has a fifth key": (lambda f, r: Reply(200, decision_body(f.key, r, audit__seq=7)), EvidenceError, False),
    "current_hash upper case": (
        lambda f, r: Reply(200, decision_body(f.key, r, audit__current_hash="AB" * 32)),
        EvidenceError,
        False,
    ),
    "evidence missing": (lambda f, r: Reply(200, decision_body(f.key, r, evidence=DELETE)), EvidenceError, False),
    "evidence seq is a string": (
        lambda f, r: Reply(200, decision_body(f.key, r, evidence__seq="7")),
        EvidenceError,
        False,
    ),
    "evidence seq is a bool": (
        lambda f, r: Reply(200, decision_body(f.key, r, evidence__seq=True)),
        EvidenceError,
        False,
    ),
    "evidence repeats reason": (
        lambda f, r: Reply(200, decision_body(f.key, r, evidence__reason="x")),
        EvidenceError,
        False,
    ),
    "evidence kind admin": (
        lambda f, r: Reply(200, decision_body(f.key, r, evidence__kind="admin")),
        EvidenceError,
        False,
    ),
    "hash mismatch: reason changed": (
        lambda f, r: Reply(200, decision_body(f.key, r, reason="allowed after all")),
        EvidenceError,
        False,
    ),
    "hash mismatch: previous_hash changed": (
        lambda f, r: Reply(200, decision_body(f.key, r, audit__previous_hash="cd" * 32)),
        EvidenceError,
        False,
    ),
    "hash mismatch: evidence field added": (
        lambda f, r: Reply(200, decision_body(f.key, r, evidence__policy_version="sha256:x")),
        EvidenceError,
        False,
    ),
    "request_id not echoed (replayed answer)": (
        lambda f, r: Reply(200, decision_body(f.key, {**r, "request_id": "an-older-request"})),
        EvidenceError,
        False,
    ),
    "oversize body": (lambda f, r: Reply(200, b" " * (2 << 20)), MalformedDecision, False),
    # Genuine, signed by the pinned key and echoing the request id, but deciding another request
    # (what someone on the path who rewrote the request and kept its id would get).
    "pinned: a genuine allow of another action": (
        lambda f, r: Reply(200, decision_body(f.key, {**r, "action": "fake.read"})),
        EvidenceError,
        True,
    ),
    "pinned: a genuine allow of another resource": (
        lambda f, r: Reply(200, decision_body(f.key, {**r, "resource": "r2"})),
        EvidenceError,
        True,
    ),
    "pinned: a genuine allow with another context": (
        lambda f, r: Reply(200, decision_body(f.key, {**r, "context": {"ticket": 8}})),
        EvidenceError,
        True,
    ),
    "pinned: a genuine allow with resource attributes the client never sent": (
        lambda f, r: Reply(200, decision_body(f.key, {**r, "resource_attributes": {"environment": "dev"}})),
        EvidenceError,
        True,
    ),
    "pinned: a genuine allow of another actor": (
        lambda f, r: Reply(200, decision_body(f.key, {**r, "actor": "other-agent"})),
        EvidenceError,
        True,
    ),
    "pinned: signature by another key": (
        lambda f, r: Reply(200, decision_body(SigningKey(), r)),
        EvidenceError,
        True,
    ),
    "pinned: signature of another hash": (
        lambda f, r: Reply(200, decision_body(f.key, r, audit__kms_signature__signature=f.key.sign("00" * 32))),
        EvidenceError,
        True,
    ),
    "pinned: unknown key id": (
        lambda f, r: Reply(200, decision_body(f.key, r, audit__kms_signature__key_id="zt-p256-other")),
        EvidenceError,
        True,
    ),
    "pinned: mock algorithm": (
        lambda f, r: Reply(200, decision_body(f.key, r, audit__kms_signature__algorithm="MOCK_ECDSA_SHA_256")),
        EvidenceError,
        True,
    ),
    "pinned: signature not base64": (
        lambda f, r: Reply(200, decision_body(f.key, r, audit__kms_signature__signature="not base64!")),
        EvidenceError,
        True,
    ),
}


def client_for(fake: FakeControlPlane, pinned: bool) -> ControlPlaneClient:
    return ControlPlaneClient(
        fake.url,
        actor="fake-agent",
        token="zt_agent_secret",
        timeout=TIMEOUT,
        pinned_keys=fake.key.jwks() if pinned else None,
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_decide_raises(fake: FakeControlPlane, name: str) -> None:
    behaviour, expected, pinned = CASES[name]
    fake.behaviour = lambda request: behaviour(fake, request)
    remembered = len(ISSUED)
    with pytest.raises(expected):
        client_for(fake, pinned).decide(action="fake.write", resource="r1")
    assert len(ISSUED) == remembered  # a refused answer never opens a LangGraph gate


@pytest.mark.parametrize("name", sorted(CASES))
def test_guarded_call_does_not_run(fake: FakeControlPlane, name: str) -> None:
    behaviour, _, pinned = CASES[name]
    fake.behaviour = lambda request: behaviour(fake, request)
    ran = []
    result = client_for(fake, pinned).guarded_call(action="fake.write", resource="r1", fn=lambda: ran.append(1))
    assert ran == []
    assert result.execution_skipped is True
    assert result.decision == "deny" and result.ok is False
    assert result.error and result.reason.startswith("no decision from the control plane, not run:")
    assert result.audit is None


@pytest.mark.parametrize("name", sorted(CASES))
async def test_async_guarded_call_does_not_run(fake: FakeControlPlane, name: str) -> None:
    behaviour, expected, pinned = CASES[name]
    fake.behaviour = lambda request: behaviour(fake, request)
    client = AsyncControlPlaneClient(sync=client_for(fake, pinned))
    ran = []

    async def work() -> None:
        ran.append(1)

    result = await client.guarded_call(action="fake.write", resource="r1", fn=work)
    assert ran == [] and result.execution_skipped is True
    with pytest.raises(expected):
        await client.decide(action="fake.write")


def test_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ControlPlaneClient(f"http://127.0.0.1:{port}", actor="a", timeout=TIMEOUT)
    with pytest.raises(ControlPlaneUnreachable):
        client.decide(action="fake.write")
    ran = []
    assert client.guarded_call(action="fake.write", fn=lambda: ran.append(1)).execution_skipped
    assert ran == []


@pytest.fixture
def blackholes() -> Iterator[List[Any]]:
    """Two local addresses where a connection attempt hangs, as at a blackholed address (the
    usual ones, 10.255.255.1 or TEST-NET 192.0.2.1, answer or refuse on some networks): each a
    listener with a backlog of 0 whose one queue place is taken, so Linux drops the SYNs of
    every later attempt."""
    listeners: List[socket.socket] = []
    fillers: List[socket.socket] = []
    try:
        for _ in range(2):
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen(0)
            listeners.append(listener)
            fillers.append(socket.create_connection(listener.getsockname(), timeout=TIMEOUT))
        with socket.socket() as probe, pytest.raises(socket.timeout):
            probe.settimeout(0.2)
            probe.connect(listeners[0].getsockname())
        yield [listener.getsockname() for listener in listeners]
    finally:
        for sock in fillers + listeners:
            sock.close()


def test_the_timeout_bounds_connecting_to_every_address(monkeypatch: pytest.MonkeyPatch, blackholes: List[Any]) -> None:
    """Each address got the whole timeout: N blackholed addresses took N timeouts."""

    def getaddrinfo(host: str, *args: Any, **kwargs: Any) -> List[Any]:
        assert host == "control-plane.test"
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address) for address in blackholes]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    client = ControlPlaneClient("http://control-plane.test:8080", actor="a", timeout=TIMEOUT)
    started = time.monotonic()
    with pytest.raises(ControlPlaneTimeout):
        client.decide(action="fake.write")
    assert time.monotonic() - started < TIMEOUT * 1.2


def test_the_timeout_bounds_the_name_lookup(monkeypatch: pytest.MonkeyPatch, blackholes: List[Any]) -> None:
    """The lookup was outside the timeout: a resolver that hangs held the decision as long."""

    def getaddrinfo(host: str, *args: Any, **kwargs: Any) -> List[Any]:
        time.sleep(TIMEOUT * 3)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address) for address in blackholes]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    client = ControlPlaneClient("http://control-plane.test:8080", actor="a", timeout=TIMEOUT)
    ran: List[int] = []
    started = time.monotonic()
    result = client.guarded_call(action="fake.write", fn=lambda: ran.append(1))
    assert time.monotonic() - started < TIMEOUT * 1.2
    assert ran == [] and result.execution_skipped and result.error
    assert result.error.endswith(f"control plane did not answer within {TIMEOUT}s"), result.error


def test_deny_is_a_decision_not_an_error(fake: FakeControlPlane) -> None:
    fake.behaviour = lambda request: Reply(403, decision_body(fake.key, request, "deny"))
    client = client_for(fake, pinned=True)
    decision = client.decide(action="fake.write", resource="r1")
    assert decision.decision == "deny" and decision["decision"] == "deny"
    assert ISSUED.lookup(decision) is None
    ran = []
    result = client.guarded_call(action="fake.write", resource="r1", fn=lambda: ran.append(1))
    assert ran == [] and result.execution_skipped and result.error is None
    assert result.reason == "denied by the fake" and result.audit is not None


def test_allow_runs_once_and_returns_the_result(fake: FakeControlPlane) -> None:
    client = client_for(fake, pinned=True)
    ran = []
    result = client.guarded_call(action="fake.write", resource="r1", fn=lambda: ran.append(1) or "done")
    assert ran == [1]
    assert result.execution_skipped is False and result["execution_skipped"] is False
    assert result.result == "done" and result.decision == "allow"
    assert set(result.audit or {}) == {"timestamp", "previous_hash", "current_hash", "kms_signature"}
    assert ISSUED.lookup(result) == ("fake-agent", "fake.write", "r1", (result.evidence or {}).get("seq"))


def test_request_shape(fake: FakeControlPlane) -> None:
    """A fresh request_id per call, the bearer token, the actor, and the context as given."""
    client = client_for(fake, pinned=False)
    client.decide(action="fake.write", resource="r1", context={"environment": "staging"})
    client.decide(action="fake.write")
    first, second = fake.requests
    assert first == {
        "actor": "fake-agent",
        "action": "fake.write",
        "resource": "r1",
        "context": {"environment": "staging"},
        "request_id": first["request_id"],
    }
    assert len(first["request_id"]) == 32 and first["request_id"] != second["request_id"]
    assert fake.headers[0]["authorization"] == "Bearer zt_agent_secret"
    assert "zt_agent_secret" not in repr(client)


def test_environment_defaults(fake: FakeControlPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZT_CONTROL_PLANE_URL", fake.url)
    monkeypatch.setenv("ZT_ACTOR", "env-agent")
    monkeypatch.setenv("ZT_TOKEN", "zt_agent_env")
    client = ControlPlaneClient()
    assert client.decide(action="fake.read").actor == "env-agent"
    assert fake.headers[-1]["authorization"] == "Bearer zt_agent_env"


def test_empty_action_is_refused_locally(fake: FakeControlPlane) -> None:
    client = client_for(fake, pinned=False)
    ran = []
    assert client.guarded_call(action="", fn=lambda: ran.append(1)).execution_skipped
    assert ran == [] and fake.requests == []


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:1", "127.0.0.1:3000", "http://", "http://h/?q=1"])
def test_a_bad_base_url_is_refused_at_construction(url: str) -> None:
    with pytest.raises(ValueError):
        ControlPlaneClient(url)


def test_a_pinned_keys_file_that_repeats_a_member_is_refused(tmp_path: Path) -> None:
    key, other = SigningKey(), SigningKey()
    text = json.dumps(key.jwks())
    path = tmp_path / "keys.json"
    path.write_text(text)
    assert PinnedKeys.from_file(path).key_ids == ["zt-p256-fake"]
    # A second `x` before the real one: Python's json keeps the last (the real key), a reader
    # that keeps the first pins another.
    path.write_text(text.replace('"kty"', f'"x": "{other.jwks()["keys"][0]["x"]}", "kty"', 1))
    with pytest.raises(ValueError, match="duplicate key `x`"):
        PinnedKeys.from_file(path)


class Recorder:
    """A local HTTP server that records every request it gets (method, path, headers), and
    answers each with 502: a host the bearer token must never reach."""

    def __init__(self) -> None:
        self.seen: List[Dict[str, Any]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _record(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                self.rfile.read(int(headers.get("content-length", "0")))
                recorder.seen.append({"method": self.command, "path": self.path, "headers": headers})
                self.send_response(502)
                self.send_header("content-length", "0")
                self.end_headers()

            do_GET = do_POST = do_HEAD = _record

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def elsewhere() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.close()


def urlopen_client(fake: FakeControlPlane) -> ControlPlaneClient:
    return ControlPlaneClient(
        fake.url, actor="fake-agent", token="zt_agent_secret", timeout=TIMEOUT, transport=urlopen_transport
    )


def test_urlopen_transport_follows_no_redirect(fake: FakeControlPlane, elsewhere: Recorder) -> None:
    """`urlopen` followed a 302 (as a GET) to any host, `Authorization` included."""
    fake.behaviour = lambda request: Reply(302, b"", headers={"location": f"{elsewhere.url}/actions"})
    with pytest.raises(ControlPlaneStatusError) as raised:
        urlopen_client(fake).decide(action="fake.write", resource="r1")
    assert raised.value.status == 302
    ran = []
    assert urlopen_client(fake).guarded_call(action="fake.write", fn=lambda: ran.append(1)).execution_skipped
    assert ran == [] and elsewhere.seen == []


def test_urlopen_transport_ignores_proxies_in_the_environment(
    fake: FakeControlPlane, elsewhere: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`urlopen` sent the request, bearer token in clear, through `HTTP_PROXY`."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, elsewhere.url)
    # `urlopen` reads the environment when it first builds its shared opener: start afresh, as
    # a process whose environment names a proxy does.
    monkeypatch.setattr(urllib.request, "_opener", None)
    assert urlopen_client(fake).decide(action="fake.write", resource="r1").allowed
    assert fake.headers[-1]["authorization"] == "Bearer zt_agent_secret"
    assert elsewhere.seen == []


def test_urlopen_transport_bounds_the_whole_exchange(fake: FakeControlPlane) -> None:
    """`urlopen`'s timeout bounded each read: headers dripped a byte at a time never timed out."""
    fake.behaviour = lambda request: Reply(200, decision_body(fake.key, request), mode="drip_head", seconds=0.02)
    started = time.monotonic()
    with pytest.raises(ControlPlaneTimeout):
        urlopen_client(fake).decide(action="fake.write", resource="r1")
    assert time.monotonic() - started < TIMEOUT * 3


def test_a_request_nested_too_deep_is_refused_locally(fake: FakeControlPlane) -> None:
    """Nesting past Python's recursion limit raised `RecursionError` out of `json.dumps`, from
    `decide` and from `guarded_call`, which is documented never to raise for want of a decision."""
    deep: Dict[str, Any] = {}
    for _ in range(50_000):
        deep = {"k": deep}
    client = client_for(fake, pinned=False)
    with pytest.raises(InvalidRequest):
        client.decide(action="fake.write", context=deep)
    ran = []
    result = client.guarded_call(action="fake.write", context={"args": [deep]}, fn=lambda: ran.append(1))
    assert ran == [] and result.execution_skipped and result.decision == "deny" and result.error
    # A context that holds itself is refused the same way (`json.dumps` said "circular").
    loop: Dict[str, Any] = {}
    loop["self"] = loop
    assert client.guarded_call(action="fake.write", context=loop, fn=lambda: ran.append(1)).execution_skipped
    assert ran == [] and fake.requests == []


def test_an_action_is_compared_as_the_control_plane_folds_it_and_no_looser(fake: FakeControlPlane) -> None:
    """The answer names the action folded (ASCII letters to lower case): that is the action
    asked. Unicode case folding is not the control plane's: the Kelvin sign is not a `k`."""
    client = client_for(fake, pinned=True)

    def answering(action: str) -> None:
        fake.behaviour = lambda request: Reply(200, decision_body(fake.key, {**request, "action": action}))

    answering("fake.write_x")
    assert client.decide(action="Fake.WRITE_X").action == "fake.write_x"
    # `str.lower` would take each of these pairs for one action.
    for asked, answered in (("fake.write_\u212a", "fake.write_k"), ("fake.write_\u0130", "fake.write_i\u0307")):
        answering(answered)
        with pytest.raises(EvidenceError):
            client.decide(action=asked)
    answering("fake.write_y")
    with pytest.raises(EvidenceError):
        client.decide(action="fake.write_X")
