"""Results in the caller's era: adapt_result."""

from __future__ import annotations

from typing import Any

import pytest

from toolway.protocol.bridge import CACHEABLE, adapt_result

CACHEABLE_METHODS = sorted(CACHEABLE)
NON_CACHEABLE_METHODS = ["tools/call", "prompts/get", "ping", "completion/complete", "initialize"]


def test_cacheable_set() -> None:
    assert set(CACHEABLE) == {
        "tools/list",
        "prompts/list",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "server/discover",
    }


# --- modern ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", CACHEABLE_METHODS)
def test_modern_cacheable_result_gets_all_three(method: str) -> None:
    result: dict[str, Any] = {"tools": []}
    out = adapt_result(method, result, "modern")
    assert out is result
    assert out == {"tools": [], "resultType": "complete", "ttlMs": 0, "cacheScope": "private"}


@pytest.mark.parametrize("method", NON_CACHEABLE_METHODS)
def test_modern_non_cacheable_result_gets_result_type_only(method: str) -> None:
    out = adapt_result(method, {"content": []}, "modern")
    assert out == {"content": [], "resultType": "complete"}


@pytest.mark.parametrize("method", CACHEABLE_METHODS)
def test_modern_keeps_existing_values(method: str) -> None:
    result = {"resultType": "input_required", "ttlMs": 60000, "cacheScope": "public"}
    out = adapt_result(method, dict(result), "modern")
    assert out == result


@pytest.mark.parametrize("method", CACHEABLE_METHODS)
def test_modern_fills_only_the_missing_keys(method: str) -> None:
    out = adapt_result(method, {"ttlMs": 5}, "modern")
    assert out == {"ttlMs": 5, "resultType": "complete", "cacheScope": "private"}


@pytest.mark.parametrize("method", CACHEABLE_METHODS)
def test_modern_keeps_falsy_existing_values(method: str) -> None:
    # setdefault semantics: a present key is never overwritten, even when falsy.
    out = adapt_result(method, {"resultType": "", "ttlMs": None, "cacheScope": ""}, "modern")
    assert out == {"resultType": "", "ttlMs": None, "cacheScope": ""}


def test_modern_empty_result() -> None:
    assert adapt_result("ping", {}, "modern") == {"resultType": "complete"}


# --- handshake ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", CACHEABLE_METHODS + NON_CACHEABLE_METHODS)
def test_handshake_strips_modern_keys_from_complete_results(method: str) -> None:
    result = {"tools": [1], "resultType": "complete", "ttlMs": 10, "cacheScope": "public", "_meta": {"k": 1}}
    out = adapt_result(method, result, "handshake")
    assert out is result
    assert out == {"tools": [1], "_meta": {"k": 1}}


def test_handshake_strips_modern_keys_when_result_type_is_absent() -> None:
    out = adapt_result("tools/list", {"tools": [], "ttlMs": 1, "cacheScope": "private"}, "handshake")
    assert out == {"tools": []}


def test_handshake_leaves_plain_results_alone() -> None:
    assert adapt_result("tools/call", {"content": [{"type": "text", "text": "hi"}]}, "handshake") == {
        "content": [{"type": "text", "text": "hi"}]
    }
    assert adapt_result("ping", {}, "handshake") == {}


@pytest.mark.parametrize("result_type", ["input_required", "incomplete", "", None])
def test_handshake_leaves_non_complete_results_alone(result_type: Any) -> None:
    result = {"resultType": result_type, "ttlMs": 3, "cacheScope": "private", "inputRequests": [{}]}
    out = adapt_result("tools/call", dict(result), "handshake")
    assert out == result


def test_round_trip_modern_then_handshake_is_the_original() -> None:
    original = {"prompts": [{"name": "p"}]}
    out = adapt_result("prompts/list", adapt_result("prompts/list", dict(original), "modern"), "handshake")
    assert out == original
