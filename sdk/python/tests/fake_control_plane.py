"""A scriptable stand-in for a misbehaving control plane, for the fail-closed tests.

Each request is answered by `server.behaviour(request_json)`, which returns a `Reply`. Valid
answers are built as the real server builds them (hashed record, ECDSA P-256 signature), so
each test changes exactly one thing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from zt_infra.canonical import canonical_json, record_hash

KEY_ID = "zt-p256-fake"


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict (JSON-encoded) or bytes
    mode: str = "normal"  # normal | reset | truncate | sleep | drip | drip_head
    seconds: float = 0.0
    headers: Dict[str, str] = field(default_factory=dict)


class SigningKey:
    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())

    def sign(self, current_hash: str) -> str:
        der = self.private.sign(bytes.fromhex(current_hash), ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        return base64.b64encode(der).decode()

    def jwks(self, kid: str = KEY_ID) -> Dict[str, Any]:
        numbers = self.private.public_key().public_numbers()

        def b64(n: int) -> str:
            return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()

        return {
            "keys": [
                {"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(numbers.x), "y": b64(numbers.y), "alg": "ES256"}
            ]
        }


def decision_body(key: SigningKey, request: Dict[str, Any], verdict: str = "allow", **changes: Any) -> Dict[str, Any]:
    """A correct decision answer for `request`, then `changes` applied after signing (so a
    change to a hashed field makes the hash disagree)."""
    evidence: Dict[str, Any] = {"kind": "decision", "seq": 7, "authenticated": True, "policies": ["allow-1"]}
    if "request_id" in request:
        evidence["request_id"] = request["request_id"]
    if "context" in request:
        evidence["context_sha256"] = hashlib.sha256(canonical_json(request["context"])).hexdigest()
    if request.get("resource_attributes"):
        digest = hashlib.sha256(canonical_json(request["resource_attributes"])).hexdigest()
        evidence["resource_attributes_sha256"] = digest
    body: Dict[str, Any] = {
        "ok": verdict == "allow",
        "actor": request.get("actor", "fake-agent"),
        "action": request.get("action", ""),
        "resource": request.get("resource", ""),
        "decision": verdict,
        "reason": "allowed by the fake" if verdict == "allow" else "denied by the fake",
    }
    audit: Dict[str, Any] = {"timestamp": "2026-12-06T05:00:00.000Z", "previous_hash": "ab" * 32}
    record = {**{k: body[k] for k in ("actor", "action", "resource", "decision", "reason")}, **audit, **evidence}
    audit["current_hash"] = record_hash(record)
    audit["kms_signature"] = {
        "algorithm": "ECDSA_SHA_256",
        "key_id": KEY_ID,
        "signature": key.sign(audit["current_hash"]),
    }
    body["audit"] = audit
    body["evidence"] = evidence
    for path, value in changes.items():
        target = body
        parts = path.split("__")
        for part in parts[:-1]:
            target = target[part]
        if value is _DELETE:
            target.pop(parts[-1], None)
        else:
            target[parts[-1]] = value
    return body


_DELETE = object()
DELETE: Any = _DELETE


class FakeControlPlane:
    def __init__(self) -> None:
        self.key = SigningKey()
        self.behaviour: Callable[[Dict[str, Any]], Reply] = lambda request: Reply(200, decision_body(self.key, request))
        self.requests: list[Dict[str, Any]] = []
        self.headers: list[Dict[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer(Reply(200, fake.key.jwks()))

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length)
                try:
                    request = json.loads(raw)
                except ValueError:
                    request = {}
                fake.requests.append(request)
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                self._answer(fake.behaviour(request))

            def _answer(self, reply: Reply) -> None:
                body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                if reply.mode == "reset":
                    # SO_LINGER 0: close sends RST, the client sees a reset.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if reply.mode == "sleep":
                    time.sleep(reply.seconds)
                if reply.mode == "drip_head":
                    # The status line and headers themselves, one byte at a time.
                    head = f"HTTP/1.1 {reply.status} OK\r\ncontent-length: {len(body)}\r\n".encode()
                    for byte in head + b"x-slow: " + b"y" * 10_000:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(reply.seconds)
                    return
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                declared = len(body) + (100 if reply.mode == "truncate" else 0)
                self.send_header("content-length", str(declared))
                self.end_headers()
                if reply.mode == "drip":
                    for byte in body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(reply.seconds)
                else:
                    self.wfile.write(body)
                self.wfile.flush()
                if reply.mode == "truncate":
                    self.close_connection = True

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # resets and timeouts are what these tests provoke

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
