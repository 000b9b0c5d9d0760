"""Starts the real `zt serve` on a free port with its own data directory, for the tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

REPO_ROOT = Path(__file__).resolve().parents[3]
#: Seconds the server gets to answer /health after start (generous: the machine may be loaded).
START_TIMEOUT = 60.0


def find_binary() -> Tuple[Optional[Path], str]:
    """`ZT_BIN`, else `target/release/zt`, else `target/debug/zt` under the repository root."""
    configured = os.environ.get("ZT_BIN")
    if configured:
        path = Path(configured)
        return (path, "") if path.is_file() else (None, f"ZT_BIN={configured} is not a file")
    for build in ("release", "debug"):
        path = REPO_ROOT / "target" / build / "zt"
        if path.is_file():
            return path, ""
    return None, f"no zt binary: set ZT_BIN or build it (cargo build --release -p zt-cli) under {REPO_ROOT}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ZtServer:
    """One `zt serve --single-admin` process (authenticated, as deployed)."""

    def __init__(self, binary: Path, data_dir: Path) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"{data_dir.name}-serve.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [
                str(binary),
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--data-dir",
                str(data_dir),
                "--single-admin",
                "--rate-limit",
                "100000",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_healthy()
        line = (data_dir / "admin-token").read_text(encoding="utf-8").split()
        self.admin_token = line[1]

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"zt serve exited: {self.log_path.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"zt serve did not become healthy within {START_TIMEOUT}s")

    def admin(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Tuple[int, Dict[str, Any]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"content-type": "application/json", "authorization": f"Bearer {self.admin_token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def register(self, actor: str) -> str:
        """Registers `actor` (or rotates its token) and returns a working agent token."""
        status, answer = self.admin("POST", "/agents", {"actor": actor})
        assert status in (200, 201), answer
        if answer.get("token"):
            return str(answer["token"])
        status, answer = self.admin("POST", f"/agents/{actor}/token")
        assert status == 200, answer
        return str(answer["token"])

    def allow(self, action: str, reason: str) -> None:
        """Allows `action`, approving the admin's own proposal if it is pending."""
        status, answer = self.admin("POST", "/policies/allow", {"action": action, "reason": reason})
        if status == 202:
            # The pending answer names its proposal: `{"proposal": "<id>", "status": "pending"}`.
            proposal = answer.get("proposal")
            if isinstance(proposal, dict):
                proposal = proposal.get("id")
            status, answer = self.admin("POST", f"/policies/proposals/{proposal}/approve")
            assert status == 200, answer
            return
        assert status in (200, 201), answer

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return int(self.process.returncode)

    def verify_offline(self) -> subprocess.CompletedProcess[str]:
        """`zt audit verify --data-dir` on the (stopped) server's log."""
        return subprocess.run(
            [str(self.binary), "audit", "verify", "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            timeout=120,
        )
