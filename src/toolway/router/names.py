"""Namespacing: `<server>__<name>` for tools and prompts.

Server names cannot contain the separator (the config refuses them), so the first
separator in a namespaced name always ends the server part.
"""

from __future__ import annotations

from toolway.config.model import NAMESPACE_SEPARATOR


def qualify(server: str, name: str) -> str:
    return f"{server}{NAMESPACE_SEPARATOR}{name}"


def split(qualified: str) -> tuple[str, str] | None:
    """(server, name), or None when the name carries no namespace."""
    server, sep, name = qualified.partition(NAMESPACE_SEPARATOR)
    if not sep or not server or not name:
        return None
    return server, name
