"""The decision log: every policy decision, enforced or shadow, as one JSON record.

The policy filter emits a `PolicyDecided` event per evaluated call; this module listens.
Records go to the `toolway.decisions` logger (stderr, with the other structured logs; see
`policy.log_decisions`) and, when `policy.decision_log` names a file, are appended to it as
JSON lines. Each record is one unbuffered `write` of a whole line into the page cache (O_APPEND),
a few microseconds, so it is written inline rather than through a queue and a task.

Records name the caller, the call and the decision; never the arguments or any header.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
import structlog

from toolway.config.policy import PolicyConfig
from toolway.observability.events import Events
from toolway.pipeline.context import Call
from toolway.policy.engine import Decision

log = structlog.get_logger("toolway.decisions")


@dataclass(frozen=True, slots=True)
class PolicyDecided:
    """The policies decided on one call (before it went on, or was refused)."""

    call: Call
    document: dict[str, Any]  # the policy input (the log takes only what it names from it)
    decisions: tuple[Decision, ...]


def records(event: PolicyDecided) -> list[dict[str, Any]]:
    """One decision-log record per decision."""
    doc, call = event.document, event.call
    base = {
        "time": doc["time"]["rfc3339"],
        "request_id": call.request_id,
        "principal": call.identity.subject if call.identity is not None else None,
        "scheme": call.identity.scheme if call.identity is not None else None,
        "client": call.client,
        "method": call.method,
        "server": doc.get("server"),
        "target": doc.get("target"),
    }
    out = []
    for d in event.decisions:
        effect = ("allow" if d.allow else "deny") if d.applied else ("shadow-allow" if d.allow else "shadow-deny")
        record = {
            **base,
            "policy": d.policy,
            "mode": d.mode,
            "allow": d.allow,
            "effect": effect,
            "reason": d.reason,
            "elapsed_us": round(d.elapsed * 1e6, 1),
        }
        if d.error is not None:
            record["error"] = d.error
        out.append(record)
    return out


class DecisionLog:
    """Writes every decision to the logger and the JSONL file configured in `policy:`."""

    def __init__(self, config: PolicyConfig) -> None:
        self._level = config.log_decisions
        self._path = Path(config.decision_log) if config.decision_log else None
        self._file: IO[bytes] | None = None

    def open(self) -> None:
        """Open the JSONL file for appending (creating its folder).

        Raises:
            OSError: it cannot be opened.
        """
        if self._path is not None and self._file is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self._path, "ab", buffering=0)

    def install(self, events: Events) -> None:
        events.subscribe(PolicyDecided, self.on_decided)

    def on_decided(self, event: PolicyDecided) -> None:
        for record in records(event):
            if self._file is not None:
                self._file.write(orjson.dumps(record) + b"\n")
            if self._level == "all" or (self._level == "denials" and not record["allow"]):
                log.info("policy decision", **record)

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()
