"""When a retry is safe, and the jittered back-off."""

from __future__ import annotations

import random

import pytest

from toolway.config.routing import Retries
from toolway.protocol.errors import (
    UpstreamConnectionLost,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRefused,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from toolway.registry.catalog import ServerCatalog
from toolway.router.retry import RetryPolicy, idempotent_tools

CATALOG = ServerCatalog(
    items={
        "tools/list": (
            {"name": "read", "annotations": {"readOnlyHint": True}},
            {"name": "put", "annotations": {"idempotentHint": True, "readOnlyHint": False}},
            {"name": "charge", "annotations": {"idempotentHint": False}},
            {"name": "plain"},
        )
    }
)


def policy(**config: object) -> RetryPolicy:
    return RetryPolicy(Retries.model_validate(config), random.Random(1))


def test_annotations_make_a_tool_safe_to_repeat() -> None:
    assert idempotent_tools(CATALOG) == {"read", "put"}
    p = policy(retryable_tools=["plain"])
    assert p.safe("tools/call", "read", CATALOG) and p.safe("tools/call", "put", CATALOG)
    assert p.safe("tools/call", "plain", CATALOG)  # configured
    assert not p.safe("tools/call", "charge", CATALOG)
    assert p.safe("resources/read", None, CATALOG) and p.safe("prompts/get", None, CATALOG)


@pytest.mark.parametrize(
    ("exc", "safe", "retried"),
    [
        (UpstreamRefused("s", "refused"), False, True),  # never reached: always safe
        (UpstreamUnavailable("s", "down"), False, True),
        (UpstreamConnectionLost("s", "reset"), False, False),  # may have run
        (UpstreamConnectionLost("s", "reset"), True, True),
        (UpstreamTimeout("s", "slow"), False, False),
        (UpstreamTimeout("s", "slow"), True, True),
        (UpstreamProtocolError("s", "garbage"), True, False),  # the server's answer: again would be the same
    ],
)
def test_should_retry(exc: UpstreamError, safe: bool, retried: bool) -> None:
    assert policy(attempts=3).should_retry(exc, safe, attempt=1) is retried


def test_attempts_bound_the_retries() -> None:
    p = policy(attempts=2)
    exc = UpstreamRefused("s", "refused")
    assert p.should_retry(exc, True, 1) and not p.should_retry(exc, True, 2)


def test_backoff_is_jittered_and_capped() -> None:
    p = policy(backoff_initial=0.1, backoff_max=0.3)
    first = [p.backoff(1) for _ in range(200)]
    assert all(0 <= d <= 0.1 for d in first) and len(set(first)) > 100
    assert all(0 <= p.backoff(5) <= 0.3 for _ in range(200))
    assert policy(backoff_initial=0).backoff(3) == 0.0
