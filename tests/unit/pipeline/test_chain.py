"""The filter chain: compose order and short-circuiting."""

from __future__ import annotations

from typing import Any

import pytest

from toolway.observability.events import Events
from toolway.pipeline.chain import build_chain, compose
from toolway.pipeline.context import Call, Handler
from toolway.protocol.errors import InvalidParams


def make_call(method: str = "tools/call") -> Call:
    return Call(
        method=method,
        params={"name": "s__t"},
        era="modern",
        protocol_version="2026-07-28",
        client_capabilities={},
        client_info=None,
        request_id="req-1",
    )


class Recorder:
    """A filter that logs when it sees the call and the result, and tags both."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def __call__(self, call: Call, next_: Handler) -> dict[str, Any]:
        self.log.append(f"{self.name}:call")
        call.annotations.setdefault("seen", []).append(self.name)
        result = await next_(call)
        self.log.append(f"{self.name}:result")
        result.setdefault("trail", []).append(self.name)
        return result


def terminal_for(log: list[str], result: dict[str, Any] | None = None) -> Handler:
    async def terminal(call: Call) -> dict[str, Any]:
        log.append("terminal")
        return dict(result or {})

    return terminal


async def test_no_filters_is_the_terminal() -> None:
    log: list[str] = []
    terminal = terminal_for(log, {"ok": True})
    handler = compose([], terminal)
    assert handler is terminal
    assert await handler(make_call()) == {"ok": True}


async def test_first_filter_sees_the_call_first_and_the_result_last() -> None:
    log: list[str] = []
    handler = compose([Recorder("a", log), Recorder("b", log), Recorder("c", log)], terminal_for(log))
    call = make_call()
    result = await handler(call)
    assert log == ["a:call", "b:call", "c:call", "terminal", "c:result", "b:result", "a:result"]
    assert call.annotations["seen"] == ["a", "b", "c"]
    assert result["trail"] == ["c", "b", "a"]


async def test_the_same_call_object_flows_through() -> None:
    seen: list[Call] = []

    class Capture:
        async def __call__(self, call: Call, next_: Handler) -> dict[str, Any]:
            seen.append(call)
            return await next_(call)

    async def terminal(call: Call) -> dict[str, Any]:
        seen.append(call)
        return {}

    call = make_call()
    await compose([Capture(), Capture()], terminal)(call)
    assert seen == [call, call, call]
    assert all(c is call for c in seen)


async def test_a_filter_can_replace_the_call() -> None:
    class Rewrite:
        async def __call__(self, call: Call, next_: Handler) -> dict[str, Any]:
            return await next_(make_call("prompts/get"))

    async def terminal(call: Call) -> dict[str, Any]:
        return {"method": call.method}

    assert await compose([Rewrite()], terminal)(make_call("tools/call")) == {"method": "prompts/get"}


async def test_a_filter_can_short_circuit_by_returning() -> None:
    log: list[str] = []

    class Cache:
        async def __call__(self, call: Call, next_: Handler) -> dict[str, Any]:
            log.append("cache:hit")
            return {"cached": True}

    handler = compose([Recorder("a", log), Cache(), Recorder("c", log)], terminal_for(log))
    result = await handler(make_call())
    assert result == {"cached": True, "trail": ["a"]}
    assert log == ["a:call", "cache:hit", "a:result"]


async def test_a_filter_can_short_circuit_by_raising() -> None:
    log: list[str] = []

    class Deny:
        async def __call__(self, call: Call, next_: Handler) -> dict[str, Any]:
            log.append("deny")
            raise InvalidParams("denied")

    handler = compose([Recorder("a", log), Deny(), Recorder("c", log)], terminal_for(log))
    with pytest.raises(InvalidParams, match="denied"):
        await handler(make_call())
    assert log == ["a:call", "deny"]


async def test_errors_from_the_terminal_pass_through_every_filter() -> None:
    log: list[str] = []
    caught: list[BaseException] = []

    class Observe:
        async def __call__(self, call: Call, next_: Handler) -> dict[str, Any]:
            try:
                return await next_(call)
            except Exception as exc:
                caught.append(exc)
                raise

    async def failing(call: Call) -> dict[str, Any]:
        raise RuntimeError("upstream fell over")

    handler = compose([Observe(), Recorder("b", log), Observe()], failing)
    with pytest.raises(RuntimeError, match="fell over"):
        await handler(make_call())
    assert len(caught) == 2
    assert caught[0] is caught[1]
    assert log == ["b:call"]


async def test_a_filter_can_recover_from_an_error() -> None:
    class Fallback:
        async def __call__(self, call: Call, next_: Handler) -> dict[str, Any]:
            try:
                return await next_(call)
            except RuntimeError:
                return {"fallback": True}

    async def failing(call: Call) -> dict[str, Any]:
        raise RuntimeError("boom")

    assert await compose([Fallback()], failing)(make_call()) == {"fallback": True}


async def test_a_composed_chain_is_reusable() -> None:
    log: list[str] = []
    handler = compose([Recorder("a", log)], terminal_for(log))
    for _ in range(3):
        await handler(make_call())
    assert log == ["a:call", "terminal", "a:result"] * 3


async def test_compose_accepts_any_sequence() -> None:
    log: list[str] = []
    handler = compose((Recorder("a", log), Recorder("b", log)), terminal_for(log))
    await handler(make_call())
    assert log[:2] == ["a:call", "b:call"]


async def test_build_chain_reaches_the_router() -> None:
    calls: list[Call] = []

    async def router(call: Call) -> dict[str, Any]:
        calls.append(call)
        return {"content": []}

    call = make_call()
    assert await build_chain(router, Events())(call) == {"content": []}
    assert calls == [call]


async def test_build_chain_lets_router_errors_through() -> None:
    async def router(call: Call) -> dict[str, Any]:
        raise InvalidParams("bad")

    with pytest.raises(InvalidParams):
        await build_chain(router, Events())(make_call())
