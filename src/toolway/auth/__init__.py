"""Who is calling: one module per authentication scheme, and the identity they all produce."""

from toolway.auth.identity import Identity

__all__ = ["Identity"]
