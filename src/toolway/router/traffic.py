"""Traffic control at run time: kill switches, version weights (canary, blue/green), draining.

Everything here takes effect on the next call and is undone the same way: no
restart, no config reload. This is the gateway's in-memory copy, asked on every
call; operators change it through `state/traffic.py`, which writes the change to the
state backend first, so every replica (and a replica started later) applies it too.

Version weights are percentages. `{v2: 10}` sends 10% of a server's calls to its
`v2` replicas and shares the other 90% equally among its other versions;
`{v1: 0, v2: 100}` is a blue/green switch. Named weights must not add up to more
than 100.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from toolway.config.model import NAMESPACE_SEPARATOR
from toolway.observability.events import Events, TrafficChanged
from toolway.protocol.errors import Killed


class TrafficError(ValueError):
    """A traffic change that cannot be applied; the message says why."""


class Traffic:
    def __init__(self, events: Events | None = None) -> None:
        self.events = events
        self.killed_servers: set[str] = set()
        self.killed_tools: set[str] = set()  # qualified names, `<server>__<tool>`
        self.weights: dict[str, dict[str, int]] = {}  # server -> version -> percent
        # Called with the server whose listed tools a kill or revive changed (killed servers and
        # tools are left out of the lists): the composition root rebuilds views and tells clients.
        self.on_listing: Callable[[str], None] | None = None

    # --- kill switches ---------------------------------------------------------------------------

    def check(self, server: str, tool: str | None) -> None:
        """Raises `Killed` when the server, or this tool of it, is switched off."""
        if not self.killed_servers and not self.killed_tools:
            return  # the common case: one truthiness test per call
        if server in self.killed_servers:
            raise Killed(server, "switched off by an operator (toolway kill server); calls fail until it is revived")
        if tool is not None and f"{server}{NAMESPACE_SEPARATOR}{tool}" in self.killed_tools:
            raise Killed(
                server,
                f"tool {tool!r} switched off by an operator (toolway kill tool); calls fail until it is revived",
                data={"tool": tool},
            )

    def kill(self, kind: str, name: str) -> bool:
        """Switch a server (`kind` "server") or a qualified tool name off. False if it already was."""
        target = self._set(kind, name)
        if name in target:
            return False
        target.add(name)
        self._emit("kill", name, kind)
        self._listing(kind, name)
        return True

    def revive(self, kind: str, name: str) -> bool:
        """Undo `kill`. False if it was not switched off."""
        target = self._set(kind, name)
        if name not in target:
            return False
        target.discard(name)
        self._emit("revive", name, kind)
        self._listing(kind, name)
        return True

    def server_hidden(self, server: str) -> bool:
        """Is the server switched off (left out of the lists)?"""
        return server in self.killed_servers

    def tool_hidden(self, server: str, tool: str) -> bool:
        """Is this tool switched off (left out of the lists)?"""
        return bool(self.killed_tools) and f"{server}{NAMESPACE_SEPARATOR}{tool}" in self.killed_tools

    def validate(self, kind: str, name: str) -> None:
        """Raises `TrafficError` unless `kind` is "server" or "tool" and a tool is named `server__tool`."""
        self._set(kind, name)

    def _listing(self, kind: str, name: str) -> None:
        if self.on_listing is not None:
            self.on_listing(name if kind == "server" else name.split(NAMESPACE_SEPARATOR, 1)[0])

    def _set(self, kind: str, name: str) -> set[str]:
        if kind == "server":
            return self.killed_servers
        if kind == "tool":
            if NAMESPACE_SEPARATOR not in name.strip(NAMESPACE_SEPARATOR):
                raise TrafficError(f"a tool is named <server>{NAMESPACE_SEPARATOR}<tool>, got {name!r}")
            return self.killed_tools
        raise TrafficError(f"kill what? 'server' or 'tool', got {kind!r}")

    # --- version weights -------------------------------------------------------------------------

    def set_weights(self, server: str, weights: dict[str, Any], versions: Sequence[str]) -> dict[str, int]:
        """Replace a server's version weights (`{}` clears them). Returns what was set.

        Raises:
            TrafficError: an unknown version, a weight that is not an integer 0-100, or a sum over 100.
        """
        clean = self.check_weights(server, weights, versions)
        self.apply_weights(server, clean)
        return clean

    @staticmethod
    def check_weights(server: str, weights: dict[str, Any], versions: Sequence[str] | None) -> dict[str, int]:
        """Validated weights (see `set_weights`); `versions` None: any version name is accepted
        (weights another replica set, for a server this one may not have yet).

        Raises:
            TrafficError: naming the version or weight.
        """
        clean: dict[str, int] = {}
        for version, weight in weights.items():
            if versions is not None and version not in versions:
                raise TrafficError(f"server {server!r} has no version {version!r} (it has {sorted(set(versions))})")
            if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
                raise TrafficError(f"the weight of {version!r} must be an integer from 0 to 100, got {weight!r}")
            clean[version] = weight
        if sum(clean.values()) > 100:
            raise TrafficError(f"version weights are percentages and add up to {sum(clean.values())}, over 100")
        return clean

    def apply_weights(self, server: str, clean: dict[str, int]) -> None:
        """Replace a server's weights with ones `check_weights` returned."""
        if clean:
            self.weights[server] = clean
        else:
            self.weights.pop(server, None)
        self._emit("weights", server, ",".join(f"{v}={w}" for v, w in clean.items()) or "cleared")

    def shares(self, server: str, versions: Sequence[str]) -> dict[str, float]:
        """Each version's share of the server's calls (sums to 1 unless every weight is 0)."""
        distinct = sorted(set(versions))
        named = self.weights.get(server, {})
        rest = [v for v in distinct if v not in named]
        left = max(0, 100 - sum(named.values()))
        shares = {v: named[v] / 100 for v in distinct if v in named}
        if rest:
            shares.update({v: left / 100 / len(rest) for v in rest})
        elif 0 < sum(named.values()) < 100:  # every version named, short of 100: relative weights
            total = sum(named.values())
            shares = {v: w / total for v, w in named.items()}
        return shares

    def choose_version(self, server: str, versions: Sequence[str], present: set[str], rng: random.Random) -> str | None:
        """A version for the next call, by the weights, among the versions that have a routable
        replica (`present`); None when the weights give none of those any share."""
        shares = self.shares(server, versions)
        options = [(v, s) for v, s in shares.items() if v in present and s > 0]
        if not options:
            return None
        if len(options) == 1:
            return options[0][0]
        return rng.choices([v for v, _ in options], weights=[s for _, s in options])[0]

    def _emit(self, action: str, server: str, detail: str) -> None:
        if self.events is not None:
            self.events.emit(TrafficChanged(action, server, detail))

    def snapshot(self) -> dict[str, Any]:
        return {
            "killed": {"servers": sorted(self.killed_servers), "tools": sorted(self.killed_tools)},
            "weights": {server: dict(w) for server, w in sorted(self.weights.items())},
        }
