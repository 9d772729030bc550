"""Which worker process owns a piece of in-memory state, told by the id it was minted with.

`toolway serve --workers N` runs N gateway processes on one port. Handshake-era sessions,
legacy HTTP+SSE connections and parked stateless-era calls live in the memory of the
worker that created them, so their ids carry that worker's index (``w<index>-<random>``)
and any worker can tell where a request for them belongs (`toolway.workers` forwards it
there). In a single process nothing is tagged and ids are plain random tokens.
"""

from __future__ import annotations

_PREFIX = "w"
_SEPARATOR = "-"
MAX_WORKERS = 64

_tag = ""


def set_worker(index: int | None) -> None:
    """Tag every id minted from now on in this process with worker `index` (None: no tag)."""
    global _tag
    if index is not None and not 0 <= index < MAX_WORKERS:
        raise ValueError(f"worker index must be between 0 and {MAX_WORKERS - 1}")
    _tag = "" if index is None else f"{_PREFIX}{index}{_SEPARATOR}"


def tagged(token: str) -> str:
    """`token` with this process's worker tag in front (unchanged outside a worker)."""
    return _tag + token


def owner_of(ident: str) -> int | None:
    """The worker index an id was minted by; None for an untagged or malformed id."""
    if not ident.startswith(_PREFIX):
        return None
    digits, sep, _ = ident[1:4].partition(_SEPARATOR)
    if not sep or not digits.isdigit() or len(digits) > 2:
        return None
    index = int(digits)
    return index if index < MAX_WORKERS else None


_FOREIGN = "^"


def tag_foreign(token: str) -> str | None:
    """An upstream's opaque token (a `requestState`) tagged with this worker; None outside a worker.

    A stdio upstream runs once per worker, and what one copy of it issued only the same copy
    can redeem: the tag brings the client's retry back to this worker.
    """
    return f"{_tag}{_FOREIGN}{token}" if _tag else None


def untag_foreign(ident: str) -> str | None:
    """The upstream token inside a `tag_foreign` result; None if `ident` is not one."""
    if owner_of(ident) is None:
        return None
    _, _, rest = ident.partition(_SEPARATOR)
    return rest[1:] if rest.startswith(_FOREIGN) else None
