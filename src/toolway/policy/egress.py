"""Egress control: which addresses the gateway may open upstream connections to.

The decision is made on addresses, after resolving the host name, so a name that points at a
forbidden address is refused as well as the address itself. Refused unless `egress.allow`
lists them explicitly (the exact name, the address, or a CIDR holding it):
- cloud metadata endpoints (169.254.169.254, fd00:ec2::254, 100.100.100.200, 169.254.170.2,
  and the names metadata.google.internal, metadata.goog, metadata, instance-data…);
- link-local addresses (169.254.0.0/16, fe80::/10) and unspecified ones (0.0.0.0, ::);
- private ranges (RFC 1918, RFC 6598, fc00::/7) when `allow_private: false`;
- loopback when `allow_loopback: false` (allowed by default: local servers live there).
When `egress.allow` is not empty, an upstream must also match one of its entries.

It is applied twice: at start-up to every configured server (`check_upstream`, which the
registration API calls too), and on every connection the gateway's HTTP client opens
(`EgressResolver`), so a name that later resolves elsewhere (DNS rebinding) is refused too.
"""

from __future__ import annotations

import asyncio
import errno
import fnmatch
import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from toolway.config.policy import EgressConfig
from toolway.protocol.errors import EgressDenied

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2", "169.254.170.23")
)
METADATA_NAMES = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"}
)
_PRIVATE = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)


class Egress:
    """The egress rules from config, precomputed."""

    def __init__(self, config: EgressConfig) -> None:
        self._config = config
        self._networks: list[Network] = []
        self._names: set[str] = set()
        self._patterns: list[str] = []
        for entry in config.allow:
            text = entry.strip().lower().rstrip(".")
            try:
                self._networks.append(ipaddress.ip_network(text, strict=False))
                continue
            except ValueError:
                pass
            if "*" in text or "?" in text:
                self._patterns.append(text)
            else:
                self._names.add(text)

    async def check_upstream(self, url: str, *, unresolvable_ok: bool = False) -> None:
        """Refuse `url` unless egress rules allow every address its host resolves to.

        With `unresolvable_ok`, a host that does not resolve now passes (start-up: the
        per-connection check decides when it does resolve).

        Raises:
            EgressDenied: the message names the URL, the address and the rule.
        """
        host = _host(url)
        literal = _literal(host)
        if literal is not None:
            addresses = [literal]
        else:
            self._check_name(url, host)
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except OSError as exc:
                if unresolvable_ok:
                    return
                raise EgressDenied(
                    f"upstream {url}: cannot resolve {host!r} to check it: {exc.strerror or exc}"
                ) from None
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        self.check_addresses(url, host, addresses)

    def check_addresses(self, url: str, host: str, addresses: list[IPAddress]) -> None:
        """Refuse unless every address of `host` is allowed. Raises: EgressDenied."""
        named = host in self._names  # listed by exact name: whatever it resolves to is meant
        for address in addresses:
            problem = None if named else self._problem(address)
            if problem is not None:
                shown = host if str(address) == host else f"{host} ({address})"
                raise EgressDenied(f"upstream {url}: {shown} is {problem}")
        if self._config.allow and not self._listed(host, addresses):
            raise EgressDenied(
                f"upstream {url}: {host} matches no entry of egress.allow ({', '.join(self._config.allow)})"
            )

    def resolver(self) -> EgressResolver:
        """An aiohttp resolver that applies these rules to every connection."""
        return EgressResolver(self)

    def _check_name(self, url: str, host: str) -> None:
        if host in METADATA_NAMES and host not in self._names:
            raise EgressDenied(
                f"upstream {url}: {host} is a cloud metadata host name; list it in egress.allow to reach it"
            )

    def _problem(self, address: IPAddress) -> str | None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self._networks):
            return None
        hint = f"; add {address} (or a CIDR holding it) to egress.allow to reach it"
        if address in METADATA_ADDRESSES:
            return "a cloud metadata address" + hint
        if address.is_link_local:
            return "a link-local address (169.254.0.0/16, fe80::/10)" + hint
        if address.is_unspecified:
            return "an unspecified address (0.0.0.0, ::)" + hint
        if address.is_multicast:
            return "a multicast address" + hint
        if address.is_loopback and not self._config.allow_loopback:
            return "a loopback address and egress.allow_loopback is false" + hint
        if any(address in network for network in _PRIVATE) and not self._config.allow_private:
            return "a private address and egress.allow_private is false" + hint
        return None

    def _listed(self, host: str, addresses: list[IPAddress]) -> bool:
        if host in self._names or any(fnmatch.fnmatchcase(host, p) for p in self._patterns):
            return True
        return bool(addresses) and all(any(a in n for n in self._networks) for a in addresses)


class EgressResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then refuses hosts that egress rules forbid.

    aiohttp does not resolve literal IP addresses; those are checked at start-up or registration.
    """

    def __init__(self, egress: Egress) -> None:
        self._egress = egress
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        name = host.lower().rstrip(".")
        url = f"//{host}:{port}"
        try:
            self._egress._check_name(url, name)
            results = await self._inner.resolve(host, port, family)
            self._egress.check_addresses(url, name, [ipaddress.ip_address(r["host"].split("%")[0]) for r in results])
        except EgressDenied as exc:
            # As strerror, so aiohttp's "Cannot connect to host …" message carries it.
            raise OSError(errno.EACCES, f"egress refused: {exc.message}") from None
        return results

    async def close(self) -> None:
        await self._inner.close()


def _host(url: str) -> str:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    if not host:
        raise EgressDenied(f"upstream {url}: the URL has no host")
    return host.lower().rstrip(".")


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None
