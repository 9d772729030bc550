"""OPA Rego policies evaluated in process with `regopy` (rego-cpp).

A `RegoPolicy` is compiled once: the module is added to its own interpreter and built
into a bundle whose entry points are the decision rule and the optional `reason` rule.
Per request only `set_input` + one `query_bundle_entrypoint` run (~60-90 µs measured on
this machine kind; a query string per call costs 1.3-1.9 ms, a new interpreter 3-4 ms).

Two traps of the binding shape this module (see FIELD-NOTES):
- A rule that does not apply is `undefined`, not `false`. The output is read as its JSON
  text, and the text `undefined` is checked for first: the binding's `Output` and
  `.expressions()` are never used, because calling `.expressions()` on an undefined output
  aborts the whole process, and `Output` raises on an error output instead of showing it.
- Many mistakes (an unknown function, a recursive rule) are not found by `build`; they show
  up as an error output at the first query. `compile_policy` therefore runs one trial query
  with an empty input, so such a file is a compile error, not a denial at run time.

Evaluation runs inline on the event loop: it is short, bounded CPU work, cheaper than a hand-off
to a thread (and an interpreter holds per-query state, so a thread pool would need a lock anyway).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
import regopy
from regopy import rego_shared

from toolway.policy import RegoCompileError

_ERROR_AT = re.compile(r"\(error (\d+):")
_ERRORMSG = re.compile(r"\(errormsg (\d+):")


@dataclass(frozen=True, slots=True)
class Verdict:
    """One policy's answer. `error` is set when the policy could not decide (it then denies)."""

    allow: bool
    reason: str | None = None
    error: str | None = None


class RegoPolicy:
    """A compiled Rego module with one decision rule (`data.<package>.<rule>`).

    The rule's value is a boolean, or an object `{"allow": bool, "reason": string}`. When it
    denies without a reason, `data.<package>.reason` (a string), if defined, says why.
    Anything else — undefined, another type, an evaluation error — denies (fail closed),
    and the verdict says why.
    """

    def __init__(self, interpreter: Any, bundle: Any, *, package: str, rule: str, filename: str) -> None:
        # The interpreter must outlive every output read from it: it is kept with the bundle.
        self._interp = interpreter
        self._bundle = bundle
        self._decision = f"{package.replace('.', '/')}/{rule}"
        self._reason = f"{package.replace('.', '/')}/reason"
        self.rule_name = f"data.{package}.{rule}"
        self.filename = filename

    def evaluate(self, document: dict[str, Any]) -> Verdict:
        """Decide for one input document (JSON types only). Never raises for a policy's fault."""
        try:
            self._interp.set_input(regopy.Input(document))
        except (regopy.RegoError, TypeError, ValueError) as exc:
            return Verdict(False, "the policy input could not be set", error=_one_line(str(exc)))
        kind, value = self._query(self._decision)
        if kind == "error":
            return Verdict(False, f"{self.rule_name} failed: {value}", error=str(value))
        if kind == "undefined":
            return Verdict(False, self._why() or f"{self.rule_name} is undefined for this input (give it a `default`)")
        allow, reason = value, None
        if isinstance(value, dict) and "allow" in value:
            allow, reason = value["allow"], value.get("reason")
        if not isinstance(allow, bool):
            return Verdict(False, f"{self.rule_name} is {_short(allow)}, not a boolean")
        if allow:
            return Verdict(True)
        if not isinstance(reason, str):
            reason = self._why() or f"{self.rule_name} is false"
        return Verdict(False, reason)

    def _why(self) -> str | None:
        kind, why = self._query(self._reason)
        return why if kind == "value" and isinstance(why, str) else None

    def _query(self, entrypoint: str) -> tuple[str, Any]:
        """("value", v), ("undefined", None) or ("error", message), from the output's text."""
        try:
            impl = rego_shared.rego_bundle_query_entrypoint(self._interp._impl, self._bundle._impl, entrypoint)
        except regopy.RegoError as exc:
            return "error", _message(str(exc))
        try:
            ok = rego_shared.rego_output_ok(impl)
            text = rego_shared.rego_output_string(impl)
        finally:
            rego_shared.rego_free_output(impl)
        text = text.strip()
        if not ok or text.startswith(("(error", "<error")):
            return "error", _message(text)
        if text == "undefined":
            return "undefined", None
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            return "error", f"unreadable output {text[:120]!r}"
        first = parsed[0] if isinstance(parsed, list) and parsed else parsed
        expressions = first.get("expressions") if isinstance(first, dict) else None
        if not expressions:
            return "undefined", None
        return "value", expressions[0]


def compile_policy(source: str, *, filename: str, package: str, rule: str) -> RegoPolicy:
    """Compile a Rego module into a policy deciding with `data.<package>.<rule>`.

    Raises:
        RegoCompileError: the module does not parse, does not declare `package`, or fails its
            trial query (unknown functions, recursion, conflicting values).
    """
    declared = re.search(r"^\s*package\s+([A-Za-z0-9_.]+)", source, re.MULTILINE)
    if declared is None:
        raise RegoCompileError(f"{filename}: no `package` declaration")
    if declared.group(1) != package:
        raise RegoCompileError(
            f"{filename}: declares package {declared.group(1)!r}, but the policy's `package:` is {package!r}"
        )
    interp = regopy.Interpreter()
    interp.log_level = regopy.LogLevel.NONE  # errors come back in the exception; nothing on stdout
    path = package.replace(".", "/")
    try:
        interp.add_module(filename, source)
        # Bind the query's result to a variable: a bare rule whose default should apply is undefined.
        bundle = interp.build(f"x := data.{package}.{rule}", [f"{path}/{rule}", f"{path}/reason"])
    except regopy.RegoError as exc:
        raise RegoCompileError(f"{filename}: {_located(str(exc), source, filename)}") from None
    if not bundle.ok():
        raise RegoCompileError(f"{filename}: the policy did not build")
    policy = RegoPolicy(interp, bundle, package=package, rule=rule, filename=filename)
    kind, value = policy._query(policy._decision)
    if kind == "error":
        raise RegoCompileError(f"{filename}: {value}")
    return policy


def _message(text: str) -> str:
    """The `errormsg` texts of a rego-cpp error tree (length-prefixed), or the text collapsed."""
    found = []
    for match in _ERRORMSG.finditer(text):
        start = match.end()
        found.append(text[start : start + int(match.group(1))])
    if found:
        return "; ".join(dict.fromkeys(found))
    if text == "<error>":  # rego-cpp gives no detail for some run-time conflicts
        return "evaluation error (e.g. a complete rule with conflicting values)"
    return _one_line(text)


def _located(text: str, source: str, filename: str) -> str:
    """Each error as `line:col: message`, from the `(error N:file|offset|len (errormsg ...))` trees."""
    parts: list[str] = []
    for match in _ERROR_AT.finditer(text):
        start = match.end()
        name_len = int(match.group(1))
        name = text[start : start + name_len]
        rest = text[start + name_len :]
        where = re.match(r"\|(\d+)\|(\d+)", rest)
        msg = _ERRORMSG.search(rest)
        if msg is None:
            continue
        body = rest[msg.end() : msg.end() + int(msg.group(1))]
        if where is not None and name == filename:
            offset = int(where.group(1))
            line = source.count("\n", 0, offset) + 1
            col = offset - (source.rfind("\n", 0, offset) + 1) + 1
            parts.append(f"{line}:{col}: {body}")
        else:
            parts.append(body)
    return "; ".join(dict.fromkeys(parts)) if parts else _message(text)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


def _short(value: Any) -> str:
    return _one_line(orjson.dumps(value).decode())[:80]
