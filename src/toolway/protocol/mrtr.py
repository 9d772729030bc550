"""The era bridge for stateless-era clients: server requests become `input_required`.

A 2026-07-28 client cannot receive server->client requests. When the server
behind a call asks one (a handshake-era upstream wanting elicitation, sampling or
roots), the gateway answers the client's HTTP request with an `input_required`
result carrying the question and a `requestState` of its own, and keeps the
upstream call running, parked. The client's retry — the same request with
`inputResponses` and that `requestState` — answers the question, and the retry's
exchange receives whatever comes next: another question, or the final result.
Parked calls have a deadline; past it they are cancelled and forgotten.
(MCP 2026-07-28, "Multi Round-Trip Requests".)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from toolway.clock import Clock
from toolway.protocol.errors import InvalidParams, UpstreamTimeout
from toolway.protocol.jsonrpc import RequestId
from toolway.protocol.sinks import require_capability
from toolway.sessions.owner import tagged
from toolway.sessions.streams import EventStream

STATE_PREFIX = "tw1."


@dataclass(slots=True)
class Exchange:
    """The HTTP exchange a stateless-era call currently answers on."""

    stream: EventStream
    msg_id: RequestId


class BridgeSink:
    """A stateless-era call's way back: notifications on its stream, questions via MRTR."""

    def __init__(self, exchange: Exchange, capabilities: dict[str, Any], parking: Parking) -> None:
        self.exchange = exchange
        self._capabilities = capabilities
        self._parking = parking
        self._keys = itertools.count(1)
        self._questions: dict[str, tuple[dict[str, Any], asyncio.Future[Any]]] = {}
        self.task: asyncio.Task[Any] | None = None  # the call's own task, cancelled past the deadline
        self.principal: str | None = None  # who made the call: only they may answer it (auth/identity.py)

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self.exchange.stream.push({"jsonrpc": "2.0", "method": method, "params": params})

    async def request(self, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        require_capability(self._capabilities, method, params)
        key = f"q{next(self._keys)}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        question: dict[str, Any] = {"method": method}
        if params is not None:
            question["params"] = params
        self._questions[key] = (question, future)
        self.ask()
        try:
            answer = await future
        finally:
            self._questions.pop(key, None)
        return answer if isinstance(answer, dict) else {}

    def ask(self) -> None:
        """Answer the current exchange with the open questions, and park the call."""
        stream = self.exchange.stream
        open_questions = {k: q for k, (q, f) in self._questions.items() if not f.done()}
        if stream.closed or not open_questions:
            return
        state = self._parking.park(self)
        result = {"resultType": "input_required", "inputRequests": open_questions, "requestState": state}
        stream.push({"jsonrpc": "2.0", "id": self.exchange.msg_id, "result": result})
        stream.close()

    def resume(self, exchange: Exchange, responses: dict[str, Any]) -> None:
        """A retry arrived: it becomes the exchange, and its answers are delivered."""
        self.exchange = exchange
        exchange.stream.owner = self.task
        for key, value in responses.items():
            entry = self._questions.get(key)
            if entry is not None and not entry[1].done():
                entry[1].set_result(value)
        self.ask()  # Questions still open (or asked meanwhile) go out on the new exchange.


class Parking:
    """Parked calls by their signed `requestState`, each with a deadline."""

    def __init__(self, clock: Clock, spawn: Callable[[Coroutine[Any, Any, None]], Any], deadline: float) -> None:
        self._clock = clock
        self._spawn = spawn
        self._deadline = deadline
        self._key = secrets.token_bytes(32)
        self._parked: dict[str, BridgeSink] = {}
        self._expiry: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._parked)

    def park(self, sink: BridgeSink) -> str:
        token = tagged(secrets.token_urlsafe(16))
        self._parked[token] = sink
        self._expiry[token] = self._clock.now() + self._deadline
        self._spawn(self._expire(token))
        mac = base64.urlsafe_b64encode(hmac.new(self._key, token.encode(), hashlib.sha256).digest()[:16])
        return f"{STATE_PREFIX}{token}.{mac.rstrip(b'=').decode()}"

    def take(self, state: str, principal: str | None = None) -> BridgeSink:
        """The parked call a retry's `requestState` names, if `principal` made it.

        Raises:
            InvalidParams: the state is forged, expired, was already used, or is another principal's.
        """
        token, _, mac = state.removeprefix(STATE_PREFIX).partition(".")
        expected = base64.urlsafe_b64encode(hmac.new(self._key, token.encode(), hashlib.sha256).digest()[:16])
        if not hmac.compare_digest(mac.encode(), expected.rstrip(b"=")):
            raise InvalidParams("requestState was not issued by this gateway")
        parked = self._parked.get(token)
        if parked is not None and parked.principal != principal:
            # Another caller's parked call: as unknown to this one as a made-up state.
            raise InvalidParams("requestState is unknown or expired: send the original request again")
        sink = self._parked.pop(token, None)
        expiry = self._expiry.pop(token, None)
        if sink is not None and expiry is not None and self._clock.now() >= expiry:
            if sink.task is not None:
                sink.task.cancel()
            sink = None
        if sink is None:
            raise InvalidParams("requestState is unknown or expired: send the original request again")
        return sink

    async def _expire(self, token: str) -> None:
        while token in self._expiry:
            remaining = self._expiry[token] - self._clock.now()
            if remaining <= 0:
                sink = self._parked.pop(token, None)
                del self._expiry[token]
                if sink is not None and sink.task is not None:
                    sink.task.cancel(UpstreamTimeout.__name__)
                return
            await self._clock.sleep(min(remaining, 1.0))
