"""Errors of setting authentication up, kept apart from the schemes so that naming them loads no
scheme (PyJWT and cryptography cost memory and are imported only when JWT is configured)."""

from __future__ import annotations


class JwtConfigError(Exception):
    """A key named by the config cannot be read."""
