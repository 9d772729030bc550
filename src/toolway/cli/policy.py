"""``toolway policy test FILE --input JSON``: evaluate a policy offline, the way the gateway would.

FILE is a Rego module (``.rego``), or built-in rules in YAML (``.yaml``/``.yml``: one policy
entry, ``{rules: [...], default: allow|deny}``). The input is the document the gateway
builds per call (docs/policy.md); when it has no ``time``, one is filled in from ``--at``
(default: now) in ``--timezone``. The decision is printed as JSON on stdout.

Exit codes: 0 the policy allows, 1 it denies, 2 bad usage, an unreadable input or a policy
that does not compile (the message names the file and rego-cpp's words).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
import yaml
from pydantic import ValidationError

from toolway.config.policy import PolicyEntry
from toolway.policy import RegoCompileError
from toolway.policy.document import time_document
from toolway.policy.engine import load_policy

EXIT_ALLOW, EXIT_DENY, EXIT_USAGE = 0, 1, 2

policy_app = typer.Typer(help="Policies: evaluate one offline.", no_args_is_help=True)


@policy_app.command("test")
def test_command(
    file: Annotated[Path, typer.Argument(help="A .rego module, or built-in rules in a .yaml file.")],
    input_json: Annotated[str, typer.Option("--input", help="The input document: JSON text, or @FILE.")],
    package: Annotated[str, typer.Option(help="The Rego file's package.")] = "toolway.policy",
    rule: Annotated[str, typer.Option(help="The decision rule in that package.")] = "allow",
    at: Annotated[str | None, typer.Option("--at", help="input.time, when the input has none (RFC 3339).")] = None,
    timezone: Annotated[str, typer.Option("--timezone", help="The zone of input.time's hour and weekday.")] = "UTC",
) -> None:
    """Evaluate FILE on one input; exit 0 when it allows, 1 when it denies."""
    document = _input(input_json)
    if "time" not in document:
        document["time"] = time_document(_when(at), _zone(timezone))
    entry = _entry(file, package, rule)
    try:
        compiled, _ = load_policy(entry)
    except RegoCompileError as exc:
        _fail(str(exc))
    start = time.perf_counter()
    verdict = compiled.evaluate(document)
    elapsed = time.perf_counter() - start
    decision: dict[str, Any] = {
        "policy": str(file),
        "allow": verdict.allow,
        "reason": verdict.reason,
        "elapsed_us": round(elapsed * 1e6, 1),
    }
    if verdict.error is not None:
        decision["error"] = verdict.error
    typer.echo(json.dumps(decision, indent=2))
    raise typer.Exit(EXIT_ALLOW if verdict.allow else EXIT_DENY)


def _entry(file: Path, package: str, rule: str) -> PolicyEntry:
    name = "".join(c if c.isalnum() or c in "_.-" else "-" for c in file.stem)[:64] or "policy"
    try:
        if file.suffix in (".yaml", ".yml"):
            try:
                data = yaml.safe_load(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
                _fail(f"{file}: cannot read the rules: {exc}")
            if not isinstance(data, dict):
                _fail(f"{file}: expected a mapping with `rules:`")
            return PolicyEntry.model_validate({"name": name, **data, "mode": "enforce"})
        return PolicyEntry(name=name, file=str(file), package=package, rule=rule)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'policy'}: {e['msg']}" for e in exc.errors())
        _fail(f"{file}: {problems}")


def _input(text: str) -> dict[str, Any]:
    source = "--input"
    if text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"{source}: cannot read the input: {exc}")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"{source}: not JSON: {exc}")
    if not isinstance(document, dict):
        _fail(f"{source}: the input must be a JSON object")
    return document


def _when(at: str | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        _fail(f"--at: {at!r} is not an RFC 3339 time")
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        _fail(f"--timezone: {name!r} is not a known IANA time zone")


def _fail(message: str) -> NoReturn:
    typer.echo(f"toolway policy test: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)
