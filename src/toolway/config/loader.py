"""Load the YAML config file into a validated :class:`GatewayConfig`.

The order is fixed: parse YAML → substitute ``${VAR}`` in string values → apply
``TOOLWAY_A__B=value`` environment overrides → validate. Substitution runs before the
overrides so an override's value is taken literally, as the operator typed it.
Every failure becomes one :class:`ConfigError` whose message names the file and field.
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from toolway.config.model import GatewayConfig

ENV_PREFIX = "TOOLWAY_"
ENV_SEPARATOR = "__"
# Mappings whose keys are names chosen by the user (env var names, HTTP headers), so an
# override keeps the key's case and value verbatim instead of lowercasing/parsing them.
_VERBATIM_MAPPINGS = frozenset({"env", "headers"})
# Fields whose values may be secrets: a validation error names the field but never echoes the value.
_SECRET_PARENTS = frozenset({"headers", "credentials", "env"})
# `$${` is the escape for a literal `${`; a `${` that matches neither form is an error
# rather than text passed through, so a typo like `${WEB-KEY}` cannot reach an upstream.
_SUBST = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")


class ConfigError(Exception):
    """The config file cannot be used; the message says where and why, one line per problem."""


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1 timestamps: `era: 2026-07-28` must stay a string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read, substitute, override and validate the config file at ``path``.

    ``environ`` (default ``os.environ``) supplies ``${VAR}`` values and ``TOOLWAY_*``
    overrides. Raises :class:`ConfigError` if the file is missing, unreadable or invalid.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read the config file: {exc}.") from None
    return load_config_text(text, source=source, environ=environ)


def load_config_text(text: str, *, source: str = "<string>", environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Like :func:`load_config`, from YAML text; ``source`` names it in error messages.

    Raises :class:`ConfigError`.
    """
    env = os.environ if environ is None else environ
    data = _parse(text, source)
    data = _substitute(data, env, source, ())
    overrides = _apply_overrides(data, env, source)
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        lines = [_format_error(error, source, overrides) for error in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


def _parse(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = exc.problem or exc.context or "syntax error"
        raise ConfigError(f"{where}: invalid YAML: {problem}.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}.") from None
    if data is None:  # an empty file means every default
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of settings, not {_kind(data)}.")
    return data


def _substitute(value: Any, env: Mapping[str, str], source: str, path: tuple[str, ...]) -> Any:
    """Expand ``${VAR}`` / ``${VAR:-default}`` in every string value (never in keys)."""
    if isinstance(value, dict):
        return {key: _substitute(item, env, source, (*path, str(key))) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, env, source, (*path, str(i))) for i, item in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def expand(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        where = f"{source}: {'.'.join(path) or '<top level>'}"
        if name is None:
            raise ConfigError(
                f"{where}: malformed '${{' reference; write ${{NAME}} or ${{NAME:-default}}, "
                "or $${ for a literal '${'."
            )
        found = env.get(name)
        if found:
            return found
        if default is not None:  # like the shell's :-, an empty variable takes the default
            return default
        if found is not None:
            return found
        raise ConfigError(
            f"{where}: environment variable {name} is not set (write ${{{name}:-default}} to give a default)."
        )

    return _SUBST.sub(expand, value)


def _apply_overrides(data: dict[str, Any], env: Mapping[str, str], source: str) -> dict[tuple[str, ...], str]:
    """Set ``TOOLWAY_A__B__C=value`` at ``a.b.c``; return each set path → variable name."""
    applied: dict[tuple[str, ...], str] = {}
    for var in sorted(env):  # sorted so a parent override is applied before its children
        if not var.startswith(ENV_PREFIX):
            continue
        raw = var[len(ENV_PREFIX) :].split(ENV_SEPARATOR)
        # Only fields of the file count, so process settings like TOOLWAY_CONFIG pass by.
        if raw[0].lower() not in GatewayConfig.model_fields:
            continue
        if not all(raw):
            raise ConfigError(f"{var}: empty segment in the override name; write TOOLWAY_A__B__C.")
        segments: list[str] = []
        for segment in raw:
            verbatim = bool(segments) and segments[-1] in _VERBATIM_MAPPINGS
            segments.append(segment if verbatim else segment.lower())
        verbatim_value = len(segments) > 1 and segments[-2] in _VERBATIM_MAPPINGS
        value = env[var] if verbatim_value else _parse_scalar(env[var])
        _set_path(data, segments, value, var, source)
        applied[tuple(segments)] = var
    return applied


def _parse_scalar(text: str) -> Any:
    """Parse an override value as YAML (`8090` → int, `true` → bool, `[a, b]` → list)."""
    try:
        value = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError:
        return text
    # `a: b` would parse as a mapping; only an explicit flow collection is structured.
    if isinstance(value, dict | list) and not text.lstrip().startswith(("{", "[")):
        return text
    return value


def _set_path(data: dict[str, Any], segments: list[str], value: Any, var: str, source: str) -> None:
    node: Any = data
    for depth, segment in enumerate(segments):
        last = depth == len(segments) - 1
        where = ".".join(segments[: depth + 1])
        if isinstance(node, list):
            if not segment.isdigit() or int(segment) >= len(node):
                raise ConfigError(
                    f"{var}: {where} does not exist in {source}: "
                    f"{'.'.join(segments[:depth])} has {len(node)} entries (indexes start at 0)."
                )
            key: Any = int(segment)
        elif isinstance(node, dict):
            key = segment
            if not last and node.get(key) is None:
                if segments[depth + 1].isdigit():
                    raise ConfigError(
                        f"{var}: {where} is not set in {source}, so it has no entry {segments[depth + 1]}."
                    )
                node[key] = {}
        else:
            parent = ".".join(segments[:depth])
            raise ConfigError(f"{var}: {parent} in {source} is {_kind(node)}, so it has no field {segment}.")
        if last:
            node[key] = value
        else:
            node = node[key]


def _format_error(error: Any, source: str, overrides: Mapping[tuple[str, ...], str]) -> str:
    loc: tuple[str | int, ...] = error["loc"]
    shown, at = _resolve(loc)
    kind, message = error["type"], str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        field = str(error.get("ctx", {}).get("discriminator", "type")).strip("'")
        shown.append(field)
        allowed = ", ".join(repr(tag) for tag in _union_tags(at, field))
        if kind == "union_tag_invalid":
            message = f"must be one of {allowed} (got {error['ctx']['tag']!r})"
        else:
            message = f"Field required; expected one of {allowed}"
    elif kind == "extra_forbidden":
        parent = _resolve(loc[:-1])[1]
        fields = sorted(parent.model_fields) if _is_model(parent) else []
        message = "unknown field" + (f"; expected one of: {', '.join(fields)}" if fields else "")
    elif kind != "missing" and not isinstance(value, dict | list) and not _SECRET_PARENTS.intersection(shown):
        message += f" (got {value!r})"  # never for values under headers/credentials: they may be secrets
    line = f"{source}: {'.'.join(shown)}: {message}" if shown else f"{source}: {message}"
    for path, var in overrides.items():
        if tuple(shown[: len(path)]) == path or tuple(path[: len(shown)]) == tuple(shown):
            return f"{line} (set by {var})"
    return line


def _resolve(loc: tuple[str | int, ...]) -> tuple[list[str], Any]:
    """Walk the model along a pydantic ``loc``: the path as the file spells it, and the type there.

    Discriminated unions add the tag (``stdio``) to the loc although it is no key in the
    file, so tag segments are dropped from the path.
    """
    at: Any = GatewayConfig
    shown: list[str] = []
    for segment in loc:
        tag_field = _discriminator(at)
        at = _strip_annotated(at)
        if _is_union(at):
            member = next((m for m in get_args(at) if _is_model(m) and _has_tag(m, segment, tag_field)), None)
            if member is not None:
                at = member
                continue
        shown.append(str(segment))
        if _is_model(at):
            field = at.model_fields.get(str(segment))
            at = field.annotation if field is not None else None
        elif get_origin(at) in (list, dict):
            at = get_args(at)[-1]
        else:
            at = None
    return shown, _strip_annotated(at)


def _union_tags(at: Any, field: str) -> list[str]:
    tags: list[str] = []
    for member in get_args(at) if _is_union(at) else ():
        if _is_model(member) and field in member.model_fields:
            tags.extend(get_args(member.model_fields[field].annotation))
    return tags


def _has_tag(model: type[BaseModel], segment: object, tag_field: str | None) -> bool:
    # Only the discriminator holds the tag: `transport: auto` must not match a member's `era: auto`.
    fields = [model.model_fields[tag_field]] if tag_field in model.model_fields else model.model_fields.values()
    return any(get_origin(f.annotation) is Literal and segment in get_args(f.annotation) for f in fields)


def _discriminator(at: Any) -> str | None:
    """The discriminator field of an ``Annotated[Union, Field(discriminator=...)]``, if ``at`` is one."""
    if get_origin(at) is not Annotated:
        return None
    found = (getattr(meta, "discriminator", None) for meta in get_args(at)[1:])
    return next((d for d in found if isinstance(d, str)), None)


def _strip_annotated(at: Any) -> Any:
    return get_args(at)[0] if get_origin(at) is Annotated else at


def _is_union(at: Any) -> bool:
    return get_origin(at) in (Union, types.UnionType)


def _is_model(at: Any) -> bool:
    return isinstance(at, type) and issubclass(at, BaseModel)


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"the value {value!r}"
