"""Fixtures: the real `zt` control plane, started once per session with its own data directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from zt_server import ZtServer, find_binary  # noqa: E402


def _binary_or_skip() -> Path:
    binary, why = find_binary()
    if binary is None:
        if os.environ.get("ZT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"ZT_REQUIRE_SERVICES=1 but {why}")
        pytest.skip(why)
    return binary


@pytest.fixture(scope="session")
def zt_binary() -> Path:
    return _binary_or_skip()


@pytest.fixture(scope="session")
def zt(zt_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZtServer]:
    """One shared authenticated control plane for the session."""
    base = tmp_path_factory.mktemp("zt")
    server = ZtServer(zt_binary, base / "data")
    yield server
    server.stop()


@pytest.fixture
def fresh_zt(zt_binary: Path, tmp_path: Path) -> Iterator[ZtServer]:
    """A control plane of the test's own, so it can be stopped and its log verified."""
    server = ZtServer(zt_binary, tmp_path / "data")
    yield server
    server.stop()
