"""DNS-rebinding protection: the Host and Origin headers must name an allowed host.

A browser page on an attacker's domain can reach a gateway on loopback; checking
Host (the name the request was sent to) and Origin (the page that sent it) stops it.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit


def _hostname(value: str) -> str | None:
    """Host header value without its port: `[::1]:8080` -> `::1`, `localhost:80` -> `localhost`.

    None for a malformed value (`[::1]evil`, `[::1`, a non-numeric port).
    """
    if value.startswith("["):
        inside, bracket, rest = value[1:].partition("]")
        if not bracket or not (rest == "" or (rest.startswith(":") and _port(rest[1:]))):
            return None
        return inside.lower()
    if value.count(":") == 1:
        name, _, port = value.partition(":")
        return name.lower() if _port(port) else None
    return value.lower()


def _port(text: str) -> bool:
    """RFC 3986: a port is digits, possibly none."""
    return text == "" or text.isdigit()


class HostOriginCheck:
    def __init__(self, allowed_hosts: Iterable[str], allowed_origins: Iterable[str]) -> None:
        self._hosts = frozenset(h.lower() for h in allowed_hosts)
        self._origins = frozenset(h.lower() for h in allowed_origins)

    def problem(self, host: str | None, origin: str | None) -> tuple[int, str] | None:
        """(HTTP status, reason) when the request must be refused, else None."""
        if "*" not in self._hosts and (host is None or _hostname(host) not in self._hosts):  # None never is
            return 421, f"Host {host!r} is not allowed"
        if origin is not None and "*" not in self._origins:
            try:
                name = urlsplit(origin).hostname
            except ValueError:
                name = None
            if name is None or name.lower() not in self._origins:
                return 403, f"Origin {origin!r} is not allowed"
        return None
