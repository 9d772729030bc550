"""The engine: modes per policy, start-up errors, and hot reload of policy files."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from toolway.clock import FixedWallClock
from toolway.config.policy import PolicyConfig
from toolway.policy.engine import PolicyEngine, PolicyLoadError

ONLY = 'package toolway.policy\nimport rego.v1\ndefault allow := false\nallow if input.tool == "{tool}"\n'


def write(path: Path, text: str) -> None:
    """Write and move the mtime on, so a change is seen even within one clock tick."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


def config(**policy: Any) -> PolicyConfig:
    return PolicyConfig.model_validate(policy)


def test_modes_enforce_shadow_and_off(tmp_path: Path) -> None:
    file = tmp_path / "p.rego"
    write(file, ONLY.format(tool="echo"))
    engine = PolicyEngine(
        config(
            policies=[
                {"name": "strict", "file": str(file), "mode": "enforce"},
                {"name": "trial", "rules": [{"tools": ["web/search"]}], "default": "deny", "mode": "shadow"},
                {"name": "unused", "file": str(tmp_path / "missing.rego"), "mode": "off"},  # never loaded
            ]
        )
    )
    decisions = engine.decide({"method": "tools/call", "tool": "add", "target": "web/add", "time": engine.time_now()})
    assert [(d.policy, d.mode, d.allow, d.applied) for d in decisions] == [
        ("strict", "enforce", False, True),
        ("trial", "shadow", False, False),
    ]
    assert all(d.elapsed > 0 for d in decisions)


def test_time_comes_from_the_injected_wall_clock_in_the_configured_zone() -> None:
    wall = FixedWallClock(datetime(2026, 11, 30, 17, 0, tzinfo=ZoneInfo("UTC")))
    engine = PolicyEngine(config(timezone="Europe/Paris"), wall_clock=wall)
    now = engine.time_now()
    assert (now["hour"], now["minute"], now["weekday"], now["timezone"]) == (18, 0, "mon", "Europe/Paris")
    assert now["rfc3339"] == "2026-11-30T17:00:00Z"
    assert now["local"] == "2026-11-30T18:00:00+01:00"


def test_a_policy_that_does_not_compile_is_a_start_up_error_naming_the_file(tmp_path: Path) -> None:
    file = tmp_path / "bad.rego"
    write(file, "package toolway.policy\nallow if {\n")
    with pytest.raises(PolicyLoadError, match=rf"^policy 'p': {file}: 2:10: "):
        PolicyEngine(config(policies=[{"name": "p", "file": str(file)}]))
    with pytest.raises(PolicyLoadError, match=r"cannot read the policy file"):
        PolicyEngine(config(policies=[{"name": "p", "file": str(tmp_path / "none.rego")}]))


def test_an_edited_file_is_reloaded_and_a_broken_edit_keeps_the_old_version(tmp_path: Path) -> None:
    file = tmp_path / "p.rego"
    write(file, ONLY.format(tool="echo"))
    engine = PolicyEngine(config(policies=[{"name": "p", "file": str(file)}]))

    def allows(tool: str) -> bool:
        return engine.decide({"tool": tool})[0].allow

    assert engine.check_files() == []  # nothing changed
    assert allows("echo") and not allows("add")
    write(file, ONLY.format(tool="add"))
    assert engine.check_files() == ["p"]
    assert allows("add") and not allows("echo")
    with capture_logs() as logs:
        write(file, "package toolway.policy\nallow if {\n")
        assert engine.check_files() == ["p"]
        assert engine.check_files() == []  # the broken version is reported once
    assert allows("add")  # still the last good version
    failed = [entry for entry in logs if entry["event"] == "policy reload failed; the previous version stays in force"]
    assert len(failed) == 1 and failed[0]["policy"] == "p" and "2:10" in failed[0]["error"]
    file.unlink()
    assert engine.check_files() == ["p"]
    assert allows("add")
    write(file, ONLY.format(tool="echo"))
    assert engine.check_files() == ["p"]
    assert allows("echo")


async def test_the_watcher_picks_up_an_edit_on_its_own(tmp_path: Path) -> None:
    file = tmp_path / "p.rego"
    write(file, ONLY.format(tool="echo"))
    engine = PolicyEngine(config(policies=[{"name": "p", "file": str(file)}], reload_seconds=0.02))
    async with engine:
        seen = engine.generation
        write(file, ONLY.format(tool="add"))
        async with asyncio.timeout(10):
            await engine.wait_generation(seen)
        assert engine.decide({"tool": "add"})[0].allow is True
