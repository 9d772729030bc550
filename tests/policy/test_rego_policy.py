"""Rego policies through regopy: decisions, reasons, undefined results and compile errors."""

from __future__ import annotations

import pytest

from toolway.policy.rego import RegoCompileError, compile_policy

HOURS = """\
package toolway.policy

import rego.v1

default allow := false

allow if input.server != "web"

allow if {
	input.time.hour >= 9
	input.time.hour < 17
}

reason := sprintf("%s is allowed only 09:00-17:00; it is %02d:00", [input.target, input.time.hour]) if not allow
"""


def compiled(source: str, package: str = "toolway.policy", rule: str = "allow"):  # type: ignore[no-untyped-def]
    return compile_policy(source, filename="p.rego", package=package, rule=rule)


def call(server: str, hour: int) -> dict[str, object]:
    return {"server": server, "target": f"{server}/search", "time": {"hour": hour}}


def test_allow_and_deny_with_the_policys_reason() -> None:
    policy = compiled(HOURS)
    assert policy.evaluate(call("web", 10)).allow is True
    assert policy.evaluate(call("files", 18)).allow is True
    verdict = policy.evaluate(call("web", 18))
    assert (verdict.allow, verdict.reason, verdict.error) == (
        False,
        "web/search is allowed only 09:00-17:00; it is 18:00",
        None,
    )


def test_an_undefined_decision_denies_and_says_so_without_crashing() -> None:
    # No default: for a tool other than echo, data.toolway.policy.allow is undefined.
    policy = compiled('package toolway.policy\nimport rego.v1\nallow if input.tool == "echo"\n')
    assert policy.evaluate({"tool": "echo"}).allow is True
    verdict = policy.evaluate({"tool": "add"})
    assert verdict.allow is False
    assert verdict.reason == "data.toolway.policy.allow is undefined for this input (give it a `default`)"
    # The same interpreter keeps working after an undefined result.
    assert policy.evaluate({"tool": "echo"}).allow is True


def test_undefined_decision_uses_a_defined_reason() -> None:
    source = 'package toolway.policy\nimport rego.v1\nallow if input.tool == "echo"\nreason := "only echo"\n'
    verdict = compiled(source).evaluate({"tool": "add"})
    assert (verdict.allow, verdict.reason) == (False, "only echo")


def test_an_object_decision_carries_its_reason() -> None:
    source = (
        "package toolway.policy\nimport rego.v1\n"
        'default decision := {"allow": false, "reason": "not on the list"}\n'
        'decision := {"allow": true} if input.tool == "echo"\n'
    )
    policy = compiled(source, rule="decision")
    assert policy.evaluate({"tool": "echo"}).allow is True
    verdict = policy.evaluate({"tool": "rm"})
    assert (verdict.allow, verdict.reason) == (False, "not on the list")


def test_a_decision_that_is_not_a_boolean_denies() -> None:
    verdict = compiled('package toolway.policy\nallow := "yes"\n').evaluate({})
    assert verdict.allow is False
    assert verdict.reason == 'data.toolway.policy.allow is "yes", not a boolean'


def test_an_evaluation_error_denies_and_names_the_error() -> None:
    # Two complete definitions that disagree for a = 1: a run-time conflict.
    source = (
        "package toolway.policy\nimport rego.v1\ndefault allow := false\n"
        "allow if input.a == 1\nallow := 5 if input.a == 1\n"
    )
    policy = compiled(source)
    verdict = policy.evaluate({"a": 1})
    assert verdict.allow is False
    assert verdict.error is not None
    assert verdict.reason is not None and verdict.reason.startswith("data.toolway.policy.allow failed: ")
    assert policy.evaluate({"a": 2}).allow is False  # and it still evaluates afterwards


def test_a_syntax_error_names_the_file_line_and_column() -> None:
    with pytest.raises(RegoCompileError) as caught:
        compiled("package toolway.policy\n\nallow if {\n")
    assert str(caught.value).startswith("p.rego: 3:10: ")


def test_an_unknown_function_is_a_compile_error() -> None:
    # rego-cpp builds such a module; the trial query at compile time finds the problem.
    with pytest.raises(RegoCompileError, match=r"^p\.rego: Function not found: foo\.bar$"):
        compiled("package toolway.policy\nimport rego.v1\nallow if foo.bar(1)\n")


def test_the_package_must_be_the_configured_one() -> None:
    with pytest.raises(RegoCompileError, match="declares package 'other', but the policy's `package:` is"):
        compiled("package other\nallow := true\n")
    with pytest.raises(RegoCompileError, match="no `package` declaration"):
        compiled("allow := true\n")
