"""Summarise conformance-suite results: one row per scenario, one column per target.

Reads what ``conformance server -o DIR`` writes (``DIR/server-<scenario>-<timestamp>/checks.json``)
for each target, and the suite's console log beside it (``DIR.log``) for the scenarios a
``--requirements`` run does not score. Prints a table (``pass``, ``FAIL``, ``-`` when not run)
and then, one line per failed scenario, its first failing check. A scenario fails when
any of its checks has status FAILURE; WARNING and INFO checks never fail it.

    python scripts/conformance_report.py --title T [--gate] [--baseline NAME] [--markdown FILE] NAME=DIR ...

With --baseline, another target's failure is listed only by the checks that passed on the
baseline (what that target adds); the baseline's own failures are listed in full.

Exit status: 1 with --gate when a scenario failed or is missing on some target, or a target has
no results at all; otherwise 0. Standard library only, so any Python 3.11 runs it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-(?P<started>\d{4}-\d{2}-\d{2}T[\d-]+Z)$")
UNSCORED_ENTRY = re.compile(r"^\s+\S+ (?P<scenario>[a-z0-9-]+) \((?P<why>[^)]+)\)$")
REASON_WIDTH = 200
Checks = list[dict[str, object]]


def read_target(directory: Path) -> dict[str, Checks]:
    """The checks of every scenario under ``directory``, by scenario name, in the order they ran."""
    runs: list[tuple[str, str, Path]] = []
    for checks_file in directory.glob("*/checks.json"):
        match = RESULT_DIR.match(checks_file.parent.name)
        if match is not None:
            runs.append((match["started"], match["scenario"], checks_file))
    results: dict[str, Checks] = {}
    for _started, scenario, checks_file in sorted(runs):
        try:
            checks = json.loads(checks_file.read_text())
        except (OSError, ValueError) as exc:
            checks = [{"status": "FAILURE", "id": "unreadable", "errorMessage": f"{checks_file}: {exc}"}]
        results.pop(scenario, None)  # a rerun replaces the earlier result and takes its place
        results[scenario] = checks if isinstance(checks, list) else []
    return results


def read_unscored(log: Path) -> dict[str, str]:
    """Scenarios the suite ran but did not score (``Not scored for ...`` in its log), and why."""
    unscored: dict[str, str] = {}
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return unscored
    inside = False
    for line in lines:
        if line.startswith("Not scored for"):
            inside = True
        elif inside and (match := UNSCORED_ENTRY.match(line)):
            unscored[match["scenario"]] = f"not scored ({match['why']})"
        elif inside and line.strip():
            inside = False
    return unscored


def failing(checks: Checks) -> list[tuple[str, str]]:
    """The failing checks as (id, one-line message), in order."""
    found = []
    for check in checks:
        if check.get("status") == "FAILURE":
            message = " ".join(str(check.get("errorMessage") or check.get("description") or "").split())
            if len(message) > REASON_WIDTH:
                message = message[: REASON_WIDTH - 1] + "…"
            found.append((str(check.get("id")), message))
    return found


def describe(checks: list[tuple[str, str]], suffix: str = "") -> str:
    """``id: message`` of the first check, and how many more there are."""
    (check_id, message), more = checks[0], len(checks) - 1
    return f"{check_id}: {message}" + (f" (+{more} more failing checks{suffix})" if more else suffix)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="+", metavar="NAME=DIR", help="a target and its -o directory")
    parser.add_argument("--title", default="conformance")
    parser.add_argument("--gate", action="store_true", help="exit 1 when anything failed")
    parser.add_argument("--baseline", help="list other targets' failures only where this one passed")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown to this file")
    args = parser.parse_args(argv)

    targets: dict[str, dict[str, Checks]] = {}
    notes: dict[str, str] = {}
    for spec in args.targets:
        name, sep, directory = spec.partition("=")
        if not sep:
            parser.error(f"expected NAME=DIR, got {spec!r}")
        targets[name] = read_target(Path(directory))
        notes.update(read_unscored(Path(directory + ".log")))
    if args.baseline is not None and args.baseline not in targets:
        parser.error(f"--baseline {args.baseline!r} is not one of the targets")

    names = list(targets)
    scenarios: list[str] = []
    for results in targets.values():
        scenarios += [s for s in results if s not in scenarios]
    fails = {(s, n): failing(targets[n][s]) for s in scenarios for n in names if s in targets[n]}
    cells = {
        (s, n): "-" if (s, n) not in fails else "FAIL" if fails[s, n] else "pass" for s in scenarios for n in names
    }
    totals = [f"{sum(cells[s, n] == 'pass' for s in scenarios)}/{len(targets[n])}" for n in names]
    empty = [name for name in names if not targets[name]]

    def reason(scenario: str, name: str) -> str | None:
        """Why ``scenario`` failed on ``name``; with --baseline, only what the baseline passed."""
        checks = fails.get((scenario, name))
        base = args.baseline
        if not checks or base is None or name == base or cells[scenario, base] != "FAIL":
            return describe(checks) if checks else None
        # Both failed: only the checks that failed here but not on the baseline say anything.
        known = {check_id for check_id, _ in fails[scenario, base]}
        extra = [check for check in checks if check[0] not in known]
        return describe(extra, f", beyond {base}'s own failures") if extra else None

    failures = [(s, n, why) for n in names for s in scenarios if (why := reason(s, n))]
    width = max([len("scenario"), *map(len, scenarios)])

    def row(first: str, values: list[str], note: str = "") -> str:
        padded = [value.ljust(max(6, len(name))) for value, name in zip(values, names, strict=True)]
        return "  ".join([first.ljust(width), *padded, note]).rstrip()

    lines = [f"== {args.title} ==", row("scenario", names, "note" if notes else "")]
    lines += [row(s, [cells[s, n] for n in names], notes.get(s, "")) for s in scenarios]
    lines.append(row("passed", totals))
    lines += [f"{name}: no results (did the target start? see its logs)" for name in empty]
    if failures:
        heading = "failures (first failing check)"
        if args.baseline:
            heading += f"; on other targets only checks that passed on {args.baseline}"
        lines += ["", heading + ":", *(f"  {n} / {s}: {reason}" for s, n, reason in failures)]
    print("\n".join(lines), flush=True)

    if args.markdown:
        note_head, note_rule = (" note |", "---|") if notes else ("", "")
        md = [f"### {args.title}", "", f"| scenario | {' | '.join(names)} |{note_head}"]
        md.append(f"|---|{'---|' * len(names)}{note_rule}")
        for s in scenarios:
            note_cell = f" {notes.get(s, '')} |" if notes else ""
            md.append(f"| {s} | {' | '.join(cells[s, n] for n in names)} |{note_cell}")
        md.append(f"| **passed** | {' | '.join(totals)} |{' |' if notes else ''}")
        if failures:
            md += ["", heading + ":", "", *(f"- {n} / `{s}`: {reason}" for s, n, reason in failures)]
        args.markdown.write_text("\n".join(md) + "\n")

    # "-" on a target that ran other scenarios means its run broke off before that one.
    failed = bool(empty) or any(cell != "pass" for cell in cells.values())
    return 1 if args.gate and failed else 0


if __name__ == "__main__":
    sys.exit(main())
