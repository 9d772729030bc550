"""`toolway policy test FILE --input JSON`: the decision on stdout, the exit code says allow/deny."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from toolway.cli.main import app

HOURS = """\
package toolway.policy

import rego.v1

default allow := false

allow if input.server != "web"

allow if {
	input.time.hour >= 9
	input.time.hour < 17
}

reason := msg if {
	not allow
	msg := sprintf("web tools are allowed 09:00-17:00 only; it is %02d:%02d", [input.time.hour, input.time.minute])
}
"""
CALL = json.dumps({"method": "tools/call", "server": "web", "tool": "search", "target": "web/search"})


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["policy", "test", *args])
    return result.exit_code, result.stdout, result.stderr


def policy(tmp_path: Path, text: str = HOURS, name: str = "hours.rego") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_deny_exits_1_with_the_reason(tmp_path: Path) -> None:
    code, out, _ = run(
        policy(tmp_path), "--input", CALL, "--at", "2026-11-30T18:00:00+01:00", "--timezone", "Europe/Paris"
    )
    assert code == 1
    decision = json.loads(out)
    assert (decision["allow"], decision["reason"]) == (False, "web tools are allowed 09:00-17:00 only; it is 18:00")


def test_allow_exits_0(tmp_path: Path) -> None:
    code, out, _ = run(
        policy(tmp_path), "--input", CALL, "--at", "2026-11-30T10:30:00+01:00", "--timezone", "Europe/Paris"
    )
    assert code == 0
    assert json.loads(out)["allow"] is True


def test_the_input_may_bring_its_own_time_or_come_from_a_file(tmp_path: Path) -> None:
    doc = tmp_path / "input.json"
    doc.write_text(json.dumps({"server": "web", "time": {"hour": 12, "minute": 0}}))
    assert run(policy(tmp_path), "--input", f"@{doc}")[0] == 0


def test_undefined_results_deny_without_crashing(tmp_path: Path) -> None:
    file = policy(tmp_path, 'package toolway.policy\nimport rego.v1\nallow if input.tool == "echo"\n')
    code, out, _ = run(file, "--input", '{"tool": "add"}')
    assert code == 1
    assert "undefined" in json.loads(out)["reason"]


def test_built_in_rules_in_yaml(tmp_path: Path) -> None:
    rules = policy(tmp_path, "default: deny\nrules:\n  - tools: [web/search]\n    hours: '09:00-17:00'\n", "rules.yaml")
    assert run(rules, "--input", CALL, "--at", "2026-11-30T10:00:00+00:00")[0] == 0
    code, out, _ = run(rules, "--input", CALL, "--at", "2026-11-30T18:00:00+00:00")
    assert code == 1
    assert json.loads(out)["reason"].startswith("web/search is not allowed for anonymous at mon 18:00 (UTC)")


def test_usage_errors_exit_2_and_name_the_problem(tmp_path: Path) -> None:
    code, out, err = run(policy(tmp_path, "package toolway.policy\nallow if {\n"), "--input", CALL)
    assert (code, out) == (2, "")
    assert "bad.rego" not in err and "hours.rego: 2:10: " in err
    assert run(policy(tmp_path), "--input", "{not json")[0] == 2
    assert run(policy(tmp_path), "--input", "[]")[0] == 2
    assert run(policy(tmp_path), "--input", CALL, "--timezone", "Mars/Olympus")[0] == 2
    assert run(policy(tmp_path, "package other\n"), "--input", CALL)[0] == 2
    assert run(str(tmp_path / "missing.rego"), "--input", CALL)[0] == 2
