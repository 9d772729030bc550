"""Built-in rules (YAML) compiled to Rego, so they take the same decision path as a Rego file.

    policies:
      - name: office-hours
        default: allow            # calls no rule covers
        rules:
          - tools: ["web/*"]      # `server/tool` globs; `*` stays within a segment, "*" alone is every tool
            teams: [research]     # who: subjects, teams, roles (any one matches); none listed: anyone
            hours: "09:00-17:00"  # when, in policy.timezone; "22:00-06:00" spans midnight
            days: [mon, tue, wed, thu, fri]

A call a rule covers (its method and `server/name` match) is allowed when at least one covering
rule admits it (who and when); a call no rule covers gets `default`. A denial's reason names the
call, the caller, the time and the covering rules.
"""

from __future__ import annotations

import json

from toolway.config.policy import PolicyEntry, RuleConfig
from toolway.policy.rego import RegoPolicy, compile_policy

PACKAGE = "toolway.rules"
RULE = "allow"
_METHODS = (("tools", "tools/call"), ("prompts", "prompts/get"))


def rules_to_rego(entry: PolicyEntry) -> str:
    """The Rego module for a `rules:` policy (readable: `toolway policy show` style output)."""
    assert entry.rules is not None
    lines = [
        f"# Built-in rules of policy {entry.name!r}, compiled by Toolway.",
        f"package {PACKAGE}",
        "",
        "import rego.v1",
        "",
        "default allow := false",
        "",
        "allow if admitted",
    ]
    if entry.default == "allow":
        lines.append("allow if not covered")
    lines += [
        "",
        'principal := object.get(input, ["identity", "subject"], "anonymous")',
        "minute_of_day := (input.time.hour * 60) + input.time.minute",
        f"descriptions := {json.dumps([describe(i, rule) for i, rule in enumerate(entry.rules)])}",
        "",
    ]
    if entry.default == "deny":
        lines.append(
            'reason := sprintf("%s: no rule covers it and the policy denies by default", [input.target]) if not covered'
        )
    lines += [
        "reason := msg if {",
        "\tcovered",
        "\tnot admitted",
        '\tnames := concat("; ", [descriptions[i] | some i in covering])',
        '\tclock := sprintf("%02d:%02d", [input.time.hour, input.time.minute])',
        # concat, not sprintf's %s: rego-cpp 1.5 quotes a computed string that %s formats.
        '\tmsg := concat("", [input.target, " is not allowed for ", principal, " at ", input.time.weekday, " ", '
        'clock, " (", input.time.timezone, "); rules covering it: ", names])',
        "}",
        "",
    ]
    for i, rule in enumerate(entry.rules):
        lines += _rule(i, rule)
    return "\n".join(lines) + "\n"


def compile_rules(entry: PolicyEntry) -> RegoPolicy:
    """Compile a `rules:` policy.

    Raises:
        RegoCompileError: never for valid config; kept so callers handle both kinds alike.
    """
    return compile_policy(rules_to_rego(entry), filename=f"<rules of {entry.name}>", package=PACKAGE, rule=RULE)


def describe(index: int, rule: RuleConfig) -> str:
    """A rule in words, for denial reasons: `rule 1: tools web/* for teams research 09:00-17:00 mon-fri`."""
    parts = [f"rule {index + 1}:"]
    for key, _ in _METHODS:
        patterns = getattr(rule, key)
        if patterns:
            parts.append(f"{key} {','.join(patterns)}")
    for key in ("subjects", "teams", "roles"):
        values = getattr(rule, key)
        if values:
            parts.append(f"for {key} {','.join(values)}")
    if rule.hours:
        parts.append(rule.hours)
    if rule.days:
        parts.append(",".join(rule.days))
    return " ".join(parts)


def _rule(i: int, rule: RuleConfig) -> list[str]:
    out = [f"# {describe(i, rule)}", "covered if covers_" + str(i), f"covering contains {i} if covers_{i}"]
    for key, method in _METHODS:
        patterns = [_pattern(p) for p in getattr(rule, key)]
        if patterns:
            out += [
                f"covers_{i} if {{",
                f'\tinput.method == "{method}"',
                f"\tsome pattern in {json.dumps(patterns)}",
                '\tglob.match(pattern, ["/"], input.target)',
                "}",
            ]
    out.append(f"admitted if {{ covers_{i}; who_{i}; when_{i} }}")
    if not (rule.subjects or rule.teams or rule.roles):
        out.append(f"who_{i} := true")
    if rule.subjects:
        out.append(f"who_{i} if input.identity.subject in {json.dumps(rule.subjects)}")
    if rule.teams:
        out.append(f"who_{i} if input.identity.team in {json.dumps(rule.teams)}")
    if rule.roles:
        out.append(f"who_{i} if {{ some role in input.identity.roles; role in {json.dumps(rule.roles)} }}")
    days = f"; input.time.weekday in {json.dumps(rule.days)}" if rule.days else ""
    if rule.hours is None:
        out.append(f"when_{i} if {{ true{days} }}")
    else:
        start, end = _minutes(rule.hours[:5]), _minutes(rule.hours[6:])
        if start < end:
            out.append(f"when_{i} if {{ minute_of_day >= {start}; minute_of_day < {end}{days} }}")
        else:  # spans midnight
            out.append(f"when_{i} if {{ minute_of_day >= {start}{days} }}")
            out.append(f"when_{i} if {{ minute_of_day < {end}{days} }}")
    out.append("")
    return out


def _pattern(pattern: str) -> str:
    return "*/*" if pattern == "*" else pattern


def _minutes(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:])
