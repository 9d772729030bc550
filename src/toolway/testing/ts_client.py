"""Drive an MCP server with the official TypeScript SDK client, from asyncio tests.

The driver is ``clients/ts/client.mjs`` in the repository (Node and ``npm ci --prefix clients/ts``
needed; see ``clients/ts/README.md`` for the script format)::

    results = await run_ts_client(gw.url, [{"op": "listTools"}, {"op": "callTool", "name": "a__add",
                                                                    "arguments": {"a": 2, "b": 3}}])
    assert results[1] == {"ok": True, "result": {...}}

``transport="sse"`` uses the SDK's ``SSEClientTransport`` (the 2024-11-05 HTTP+SSE transport)
instead of Streamable HTTP; ``url`` is then the GET stream, e.g. ``gw.url.removesuffix("/mcp") + "/sse"``.

Every step gives one result, ``{"ok": True, "result": ...}`` or ``{"ok": False, "error": {...}}``.
``python -m toolway.testing.ts_client install`` installs the driver's packages when they are
missing or stale (the Makefile runs it before the suite).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "TS_CLIENT_DIR",
    "TsClientError",
    "ensure_ts_client_installed",
    "run_ts_client",
    "ts_client_available",
]

SDK_PACKAGE = "@modelcontextprotocol/sdk"
# src/toolway/testing/ts_client.py -> the repository root; TOOLWAY_TS_CLIENT_DIR overrides it.
TS_CLIENT_DIR = Path(os.environ.get("TOOLWAY_TS_CLIENT_DIR") or Path(__file__).resolve().parents[3] / "clients" / "ts")
INSTALL_TIMEOUT_SECONDS = 300.0
# Beyond the driver's own --timeout: its start-up, and its exit after the timer fires.
KILL_GRACE_SECONDS = 10.0
TRANSPORTS = ("streamable-http", "sse")


class TsClientError(RuntimeError):
    """The driver could not run the script: it crashed, timed out or printed something unexpected."""

    def __init__(self, message: str, *, stderr: str = "", results: Sequence[dict[str, Any]] = ()) -> None:
        tail = stderr.strip()
        super().__init__(f"{message}\n--- ts client stderr ---\n{tail}" if tail else message)
        self.stderr = stderr
        self.results = list(results)


def _pinned_sdk_version(client_dir: Path) -> str | None:
    try:
        manifest = json.loads((client_dir / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = manifest.get("dependencies", {}).get(SDK_PACKAGE)
    return version if isinstance(version, str) else None


def _installed_sdk_version(client_dir: Path) -> str | None:
    manifest_path = client_dir / "node_modules" / SDK_PACKAGE / "package.json"
    try:
        version = json.loads(manifest_path.read_text()).get("version")
    except (OSError, ValueError):
        return None
    return version if isinstance(version, str) else None


def _lock_packages(path: Path) -> dict[str, Any] | None:
    try:
        packages = json.loads(path.read_text()).get("packages")
    except (OSError, ValueError):
        return None
    return packages if isinstance(packages, dict) else None


def _installed(client_dir: Path) -> bool:
    """node_modules holds the pinned SDK and, package by package, what package-lock.json says.

    npm records what it installed in ``node_modules/.package-lock.json``; comparing versions with
    the committed lock file makes any change to it (a bumped pin, a new transitive) reinstall.
    """
    installed = _installed_sdk_version(client_dir)
    if installed is None or installed != _pinned_sdk_version(client_dir):
        return False
    locked = _lock_packages(client_dir / "package-lock.json")
    present = _lock_packages(client_dir / "node_modules" / ".package-lock.json")
    if locked is None or present is None:
        return False
    for key, entry in locked.items():
        if not key:  # the root project itself
            continue
        have = present.get(key)
        if have is None:
            if isinstance(entry, dict) and entry.get("optional"):
                continue  # an optional package npm left out on this platform
            return False
        if not isinstance(entry, dict) or not isinstance(have, dict) or have.get("version") != entry.get("version"):
            return False
    return True


def ts_client_available(client_dir: Path = TS_CLIENT_DIR) -> bool:
    """``node`` is on PATH and the driver's packages are installed (the pinned SDK version)."""
    return shutil.which("node") is not None and _installed(client_dir)


def ensure_ts_client_installed(
    client_dir: Path = TS_CLIENT_DIR,
    timeout: float = INSTALL_TIMEOUT_SECONDS,
) -> None:
    """Run ``npm ci --prefix clients/ts`` unless the pinned SDK is already installed there.

    Blocking; bounded by ``timeout`` seconds.

    Raises:
        RuntimeError: node or npm is not on PATH, ``npm ci`` failed or took too long.
    """
    if _installed(client_dir) and shutil.which("node") is not None:
        return
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        raise RuntimeError("the TypeScript MCP client needs node and npm on PATH")
    command = [npm, "ci", "--prefix", str(client_dir), "--no-audit", "--no-fund"]
    try:
        completed = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{' '.join(command)} took longer than {timeout}s") from exc
    if completed.returncode != 0 or not _installed(client_dir):
        raise RuntimeError(
            f"{' '.join(command)} failed with status {completed.returncode}:\n{completed.stdout}{completed.stderr}"
        )


async def run_ts_client(
    url: str,
    steps: Sequence[dict[str, Any]],
    timeout: float = 60,  # noqa: ASYNC109 - passed on to the driver, which enforces it itself
    client_dir: Path = TS_CLIENT_DIR,
    transport: Literal["streamable-http", "sse"] = "streamable-http",
) -> list[dict[str, Any]]:
    """Run ``steps`` against the MCP endpoint ``url`` with the TypeScript SDK client.

    ``transport`` picks the SDK's client transport: ``"streamable-http"`` (``url`` is the ``/mcp``
    endpoint) or ``"sse"``, the 2024-11-05 HTTP+SSE transport (``url`` is the ``/sse`` stream).

    Returns one dict per step, in order (a leading ``init`` step included).

    Raises:
        ValueError: ``transport`` is not one of the two.
        TsClientError: the driver exited non-zero, timed out, printed a line that is not JSON,
            or printed a different number of results than there are steps.
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
    node = shutil.which("node")
    if node is None:
        raise TsClientError("node is not on PATH")
    script = json.dumps(list(steps)).encode()
    process = await asyncio.create_subprocess_exec(
        node,
        str(client_dir / "client.mjs"),
        url,
        "--timeout",
        str(timeout),
        "--transport",
        transport,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout + KILL_GRACE_SECONDS):
            stdout, stderr_bytes = await process.communicate(script)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    stderr = stderr_bytes.decode(errors="replace")
    if stderr:
        # Shown by pytest with a failing test; silent otherwise.
        sys.stderr.write(stderr)
    results: list[dict[str, Any]] = []
    for line in stdout.decode(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            result = json.loads(line)
        except ValueError:
            raise TsClientError(f"ts client printed a line that is not JSON: {line!r}", stderr=stderr) from None
        if not isinstance(result, dict):
            raise TsClientError(f"ts client printed a non-object line: {line!r}", stderr=stderr)
        results.append(result)
    if process.returncode != 0:
        what = "timed out" if process.returncode == 124 else f"exited with status {process.returncode}"
        raise TsClientError(
            f"ts client {what} after {len(results)} of {len(steps)} steps", stderr=stderr, results=results
        )
    if len(results) != len(steps):
        raise TsClientError(
            f"ts client gave {len(results)} results for {len(steps)} steps", stderr=stderr, results=results
        )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m toolway.testing.ts_client install [--if-node]``: install the driver's packages."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "install" or any(arg != "--if-node" for arg in args[1:]):
        sys.stderr.write("usage: python -m toolway.testing.ts_client install [--if-node]\n")
        return 2
    if "--if-node" in args and (shutil.which("node") is None or shutil.which("npm") is None):
        sys.stderr.write("node/npm not found: the TypeScript client tests will be skipped\n")
        return 0
    try:
        ensure_ts_client_installed()
    except RuntimeError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
