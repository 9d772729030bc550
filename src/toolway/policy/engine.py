"""The policy engine: every configured policy, its mode, and one decision path for all of them.

Each policy (a Rego file, or built-in rules compiled to Rego) is compiled once at start-up and
evaluated per call with the same input document. Modes, per policy:

- `enforce`: a denial refuses the call;
- `shadow`: the decision is made and logged exactly as in enforce mode, but never applied,
  so a new policy can be watched against real traffic before it bites;
- `off`: not evaluated.

Policy files are re-read when their mtime, size or inode changes (checked every
`policy.reload_seconds` on the injected monotonic clock). A file that no longer compiles
keeps the previous version in force, and the engine logs why.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import structlog

from toolway.clock import Clock, MonotonicClock, SystemWallClock, WallClock
from toolway.config.loader import ConfigError
from toolway.config.policy import PolicyConfig, PolicyEntry
from toolway.policy.document import time_document

if TYPE_CHECKING:
    from toolway.policy.rego import RegoPolicy
from toolway.policy import RegoCompileError

log = structlog.get_logger("toolway.policy")


class PolicyLoadError(ConfigError):
    """A policy cannot be used at start-up: its file is missing or does not compile."""


@dataclass(frozen=True, slots=True)
class Decision:
    """One policy's decision on one call.

    `applied` is False in shadow mode: the call goes on whatever `allow` says.
    `elapsed` is the evaluation's own time in seconds.
    """

    policy: str
    mode: str
    allow: bool
    reason: str | None
    elapsed: float
    error: str | None = None

    @property
    def applied(self) -> bool:
        return self.mode == "enforce"


@dataclass(frozen=True, slots=True)
class _Stamp:
    mtime_ns: int
    size: int
    inode: int


@dataclass(slots=True)
class _Loaded:
    entry: PolicyEntry
    compiled: RegoPolicy
    stamp: _Stamp | None  # None for built-in rules (nothing to watch)


def load_policy(entry: PolicyEntry) -> tuple[RegoPolicy, _Stamp | None]:
    """Compile one configured policy.

    Raises:
        RegoCompileError: the file cannot be read, or does not compile.
    """
    # regopy loads with the first policy, not with the gateway: most gateways configure none.
    from toolway.policy.rego import compile_policy
    from toolway.policy.rules import compile_rules

    if entry.file is None:
        return compile_rules(entry), None
    path = Path(entry.file)
    try:
        stamp = _stamp(path)
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegoCompileError(f"{entry.file}: cannot read the policy file: {exc}") from None
    return compile_policy(source, filename=entry.file, package=entry.package, rule=entry.rule), stamp


class PolicyEngine:
    """Compiled policies and their modes. `async with` runs the file watcher, when there is one."""

    def __init__(
        self,
        config: PolicyConfig,
        *,
        clock: Clock | None = None,
        wall_clock: WallClock | None = None,
    ) -> None:
        """Raises: PolicyLoadError naming the policy, its file and rego-cpp's message."""
        self._config = config
        self._clock = clock or MonotonicClock()
        self._wall = wall_clock or SystemWallClock()
        self._zone = ZoneInfo(config.timezone)
        self._policies: list[_Loaded] = []
        for entry in config.policies:
            if entry.mode == "off":
                continue
            try:
                compiled, stamp = load_policy(entry)
            except RegoCompileError as exc:
                raise PolicyLoadError(f"policy {entry.name!r}: {exc}") from None
            self._policies.append(_Loaded(entry, compiled, stamp))
        self.generation = 0  # increases whenever a file was reloaded (or failed to), for waiters
        self._bumped = asyncio.Event()  # replaced by a fresh one each time generation increases
        self._watcher: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        """Whether any policy is evaluated at all (if not, the chain has no policy stage)."""
        return bool(self._policies)

    def time_now(self) -> dict[str, Any]:
        """`input.time` for a call happening now, in `policy.timezone`."""
        return time_document(self._wall.now(), self._zone)

    def decide(self, document: dict[str, Any]) -> list[Decision]:
        """Evaluate every active policy on one input document, in config order."""
        decisions = []
        for loaded in self._policies:
            start = time.perf_counter()
            verdict = loaded.compiled.evaluate(document)
            elapsed = time.perf_counter() - start
            entry = loaded.entry
            decisions.append(Decision(entry.name, entry.mode, verdict.allow, verdict.reason, elapsed, verdict.error))
        return decisions

    def check_files(self) -> list[str]:
        """One watcher step: recompile every policy file that changed. Returns the names looked at.

        A file that fails keeps the previous version in force; the failure is logged with
        rego-cpp's message (and again only when the file changes again).
        """
        touched = []
        for loaded in self._policies:
            entry = loaded.entry
            if entry.file is None:
                continue
            try:
                stamp = _stamp(Path(entry.file))
            except OSError as exc:
                stamp = None
                error: str | None = f"cannot read the policy file: {exc}"
            else:
                error = None
            if stamp is not None and stamp == loaded.stamp:
                continue
            if stamp is None and loaded.stamp is None:
                continue  # Still missing: said so already.
            touched.append(entry.name)
            if stamp is not None:
                try:
                    loaded.compiled, loaded.stamp = load_policy(entry)
                except RegoCompileError as exc:
                    error = str(exc)
            if error is None:
                log.info("policy reloaded", policy=entry.name, file=entry.file)
                continue
            loaded.stamp = stamp  # Remember the broken version, so it is reported once.
            log.error("policy reload failed; the previous version stays in force", policy=entry.name, error=error)
        if touched:
            self.generation += 1
            self._notify()
        return touched

    async def wait_generation(self, above: int) -> int:
        """Wait until `generation` exceeds `above` (tests, admin); returns it. Unbounded: bound it."""
        while self.generation <= above:
            await self._bumped.wait()
        return self.generation

    async def watch(self) -> None:
        """Run the watcher until cancelled."""
        while True:
            await self._clock.sleep(self._config.reload_seconds)
            self.check_files()

    async def __aenter__(self) -> PolicyEngine:
        watched = any(p.entry.file is not None for p in self._policies)
        if watched and self._config.reload_seconds > 0:
            self._watcher = asyncio.create_task(self.watch(), name="policy-watcher")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    def _notify(self) -> None:
        bumped, self._bumped = self._bumped, asyncio.Event()
        bumped.set()


def _stamp(path: Path) -> _Stamp:
    st = os.stat(path)
    return _Stamp(st.st_mtime_ns, st.st_size, st.st_ino)
