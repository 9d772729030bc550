"""The `state:` section: where replicas share their hot run-time state (docs/state.md).

state: {backend: memory}                                   # the default: this process only
state: {backend: redis, url: redis://127.0.0.1:6379/0, prefix: toolway}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StateReconnect(BaseModel):
    """Back-off between attempts to reach a state backend that went away: doubles up to `max`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial: float = Field(default=0.2, gt=0)
    max: float = Field(default=10.0, gt=0)


class StateConfig(BaseModel):
    """The state backend: `memory` (one process) or `redis` (every replica of one deployment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["memory", "redis"] = "memory"
    url: str = "redis://127.0.0.1:6379/0"
    # Every key and channel starts with `<prefix>:`; replicas of one deployment share a prefix,
    # so two deployments (or two test runs) can use one Redis without seeing each other.
    prefix: str = Field(default="toolway", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    # Start-up waits this long for the first read of the shared state, then refuses to start;
    # also the bound of every command (a Redis that hangs must not hang an admin request).
    timeout_seconds: float = Field(default=5.0, gt=0)
    reconnect: StateReconnect = StateReconnect()

    @model_validator(mode="after")
    def _redis_url(self) -> StateConfig:
        if self.backend == "redis" and not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("url must be a redis://, rediss:// or unix:// URL")
        return self
