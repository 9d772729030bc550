"""The TypeScript SDK client driver (clients/ts): installed once per session, skipped without node.

In CI (``CI`` set) node is part of the machine, so a missing node fails these tests instead.
"""

from __future__ import annotations

import os
import shutil

import pytest

from toolway.testing.ts_client import ensure_ts_client_installed


@pytest.fixture(scope="session")
def ts_client() -> None:
    """Make sure ``node`` and the driver's packages are there (``npm ci`` when they are missing)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm must be on PATH in CI: the TypeScript client tests need them")
        pytest.skip("node/npm not on PATH: TypeScript client tests skipped")
    ensure_ts_client_installed()
