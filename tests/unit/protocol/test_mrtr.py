"""Multi round-trip requests: Parking (signed, single-use, expiring states) and BridgeSink."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import orjson
import pytest

from toolway.protocol.errors import InvalidParams, MissingClientCapability
from toolway.protocol.mrtr import STATE_PREFIX, BridgeSink, Exchange, Parking
from toolway.sessions.streams import EventStream

DEADLINE = 2.5
ALL_CAPS = {"sampling": {}, "elicitation": {"form": {}, "url": {}}, "roots": {}}
SAMPLE = {"messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}], "maxTokens": 10}


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


class Spawner:
    """Collects the coroutines Parking spawns; the test decides when they run."""

    def __init__(self) -> None:
        self.pending: list[Coroutine[Any, Any, None]] = []
        self.tasks: list[asyncio.Task[None]] = []

    def __call__(self, coro: Coroutine[Any, Any, None]) -> None:
        self.pending.append(coro)

    def start(self) -> list[asyncio.Task[None]]:
        tasks = [asyncio.create_task(c) for c in self.pending]
        self.pending.clear()
        self.tasks.extend(tasks)
        return tasks

    async def run(self) -> None:
        await asyncio.gather(*self.start())

    async def aclose(self) -> None:
        for coro in self.pending:
            coro.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def spawner() -> AsyncIterator[Spawner]:
    spawner = Spawner()
    yield spawner
    await spawner.aclose()


@pytest.fixture
def parking(clock: FakeClock, spawner: Spawner) -> Parking:
    return Parking(clock, spawner, DEADLINE)


def messages(stream: EventStream) -> list[dict[str, Any]]:
    frames, _, _ = stream.after(0)
    return [orjson.loads(f.split(b"data: ", 1)[1]) for f in frames]


def exchange(msg_id: Any = 1) -> Exchange:
    return Exchange(EventStream(with_ids=False), msg_id)


def bridge(parking: Parking, capabilities: dict[str, Any] | None = None, msg_id: Any = 1) -> BridgeSink:
    return BridgeSink(exchange(msg_id), ALL_CAPS if capabilities is None else capabilities, parking)


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def forever() -> None:
    await asyncio.Event().wait()


async def cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# --- Parking ----------------------------------------------------------------------------------------


def test_park_take_round_trip(parking: Parking) -> None:
    sink = bridge(parking)
    state = parking.park(sink)
    assert state.startswith(STATE_PREFIX)
    assert len(parking) == 1
    assert parking.take(state) is sink
    assert len(parking) == 0


def test_a_parked_call_is_answered_only_by_the_principal_that_made_it(parking: Parking) -> None:
    sink = bridge(parking)
    sink.principal = "jwt:alice"
    state = parking.park(sink)
    for other in (None, "jwt:mallory", "api_key:alice"):
        with pytest.raises(InvalidParams, match="unknown or expired"):
            parking.take(state, other)
    assert parking.take(state, "jwt:alice") is sink  # still parked after the others' attempts


def test_park_spawns_one_expiry_per_state(parking: Parking, spawner: Spawner) -> None:
    parking.park(bridge(parking))
    parking.park(bridge(parking))
    assert len(spawner.pending) == 2


def test_states_are_distinct_even_for_one_sink(parking: Parking) -> None:
    sink = bridge(parking)
    states = {parking.park(sink) for _ in range(50)}
    assert len(states) == 50
    assert len(parking) == 50
    assert all(parking.take(s) is sink for s in states)


def test_a_state_is_taken_only_once(parking: Parking) -> None:
    state = parking.park(bridge(parking))
    parking.take(state)
    with pytest.raises(InvalidParams, match="unknown or expired"):
        parking.take(state)


def flip(ch: str) -> str:
    return "A" if ch != "A" else "B"


def tamperings(state: str) -> list[str]:
    body = state.removeprefix(STATE_PREFIX)
    token, _, mac = body.partition(".")
    return [
        "",
        STATE_PREFIX,
        f"{STATE_PREFIX}{token}",  # no mac
        f"{STATE_PREFIX}{token}.",  # empty mac
        f"{STATE_PREFIX}{token}.{mac[:-1]}",  # truncated mac
        f"{STATE_PREFIX}{token}.{mac}A",  # extended mac
        f"{STATE_PREFIX}{token}.{mac[:-1]}{flip(mac[-1])}",  # one character of the mac changed
        f"{STATE_PREFIX}{token[:-1]}{flip(token[-1])}.{mac}",  # one character of the token changed
        f"{STATE_PREFIX}{token}x.{mac}",
        f"{STATE_PREFIX}.{mac}",
        f"{STATE_PREFIX}{token}.{mac}=",  # padding put back
        f"{STATE_PREFIX}{mac}.{token}",
        f"{STATE_PREFIX}{token}.{mac}.extra",
        f"{STATE_PREFIX}{token}.{'é' * len(mac)}",
    ]


@pytest.mark.parametrize("index", range(14))
def test_tampered_states_are_refused_and_leave_the_real_one_usable(parking: Parking, index: int) -> None:
    sink = bridge(parking)
    state = parking.park(sink)
    forged = tamperings(state)[index]
    assert forged != state
    with pytest.raises(InvalidParams):
        parking.take(forged)
    assert len(parking) == 1
    assert parking.take(state) is sink


def test_a_state_from_another_gateway_is_refused(clock: FakeClock, spawner: Spawner) -> None:
    ours = Parking(clock, spawner, DEADLINE)
    theirs = Parking(clock, spawner, DEADLINE)
    state = theirs.park(bridge(theirs))
    with pytest.raises(InvalidParams, match="not issued by this gateway"):
        ours.take(state)


async def test_expiry_cancels_the_call_and_forgets_it(parking: Parking, spawner: Spawner, clock: FakeClock) -> None:
    sink = bridge(parking)
    reasons: list[tuple[Any, ...]] = []

    async def call() -> None:
        try:
            await forever()
        except asyncio.CancelledError as exc:
            reasons.append(exc.args)
            raise

    sink.task = asyncio.create_task(call())
    state = parking.park(sink)
    await spawner.run()
    assert clock.t == DEADLINE
    assert clock.slept == [1.0, 1.0, 0.5]  # sleeps in steps of at most a second
    with pytest.raises(asyncio.CancelledError):
        await sink.task
    assert reasons == [("UpstreamTimeout",)]
    assert len(parking) == 0
    with pytest.raises(InvalidParams, match="unknown or expired"):
        parking.take(state)


async def test_expiry_without_a_task_just_forgets(parking: Parking, spawner: Spawner) -> None:
    state = parking.park(bridge(parking))
    await spawner.run()
    assert len(parking) == 0
    with pytest.raises(InvalidParams):
        parking.take(state)


async def test_taken_states_do_not_expire(parking: Parking, spawner: Spawner, clock: FakeClock) -> None:
    sink = bridge(parking)
    sink.task = asyncio.create_task(forever())
    state = parking.park(sink)
    assert parking.take(state) is sink
    await spawner.run()
    assert clock.slept == []
    assert not sink.task.done()
    await cancel(sink.task)


async def test_taking_while_the_timer_runs_stops_it(parking: Parking, spawner: Spawner, clock: FakeClock) -> None:
    sink = bridge(parking)
    sink.task = asyncio.create_task(forever())
    state = parking.park(sink)
    (timer,) = spawner.start()
    await asyncio.sleep(0)  # the timer sleeps its first second
    assert clock.slept == [1.0]
    assert parking.take(state) is sink
    await timer
    assert clock.slept == [1.0]
    assert not sink.task.done()
    await cancel(sink.task)


async def test_only_the_expired_state_goes(clock: FakeClock, spawner: Spawner) -> None:
    parking = Parking(clock, spawner, DEADLINE)
    early = parking.park(bridge(parking))
    (timer,) = spawner.start()
    await timer  # early's deadline passed; the clock is at 2.5
    late_sink = bridge(parking)
    late = parking.park(late_sink)
    assert len(parking) == 1
    with pytest.raises(InvalidParams):
        parking.take(early)
    assert parking.take(late) is late_sink


def test_a_state_past_its_deadline_is_refused_even_before_the_reaper_runs(parking: Parking, clock: FakeClock) -> None:
    state = parking.park(bridge(parking))
    clock.t += DEADLINE + 1
    try:
        parking.take(state)
    except InvalidParams:
        return
    raise AssertionError("an expired requestState was accepted")


# --- BridgeSink -------------------------------------------------------------------------------------


def input_required(stream: EventStream) -> dict[str, Any]:
    (message,) = messages(stream)
    assert stream.closed
    result = message["result"]
    assert result["resultType"] == "input_required"
    return message


def test_notify_goes_to_the_current_exchange(parking: Parking) -> None:
    sink = bridge(parking)
    sink.notify("notifications/progress", {"progress": 1})
    assert messages(sink.exchange.stream) == [
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}}
    ]


async def test_a_question_answers_the_exchange_with_input_required(parking: Parking) -> None:
    sink = bridge(parking, msg_id="req-7")
    first = sink.exchange.stream
    task = asyncio.create_task(sink.request("sampling/createMessage", SAMPLE))
    await settle()
    message = input_required(first)
    assert message["id"] == "req-7"
    assert message["jsonrpc"] == "2.0"
    result = message["result"]
    assert result["inputRequests"] == {"q1": {"method": "sampling/createMessage", "params": SAMPLE}}
    assert result["requestState"].startswith(STATE_PREFIX)
    assert set(result) == {"resultType", "inputRequests", "requestState"}
    assert not task.done()
    assert len(parking) == 1

    taken = parking.take(result["requestState"])
    assert taken is sink
    retry = exchange("req-8")
    sink.resume(retry, {"q1": {"role": "assistant", "content": {"type": "text", "text": "yo"}}})
    assert await task == {"role": "assistant", "content": {"type": "text", "text": "yo"}}
    assert sink.exchange is retry
    assert retry.stream.empty
    assert not retry.stream.closed  # the final result will be written here


async def test_a_question_without_params_has_no_params_key(parking: Parking) -> None:
    sink = bridge(parking)
    task = asyncio.create_task(sink.request("roots/list", None))
    await settle()
    assert input_required(sink.exchange.stream)["result"]["inputRequests"] == {"q1": {"method": "roots/list"}}
    await cancel(task)


@pytest.mark.parametrize("answer", [None, [], "yes", 3])
async def test_an_answer_that_is_not_an_object_becomes_empty(parking: Parking, answer: Any) -> None:
    sink = bridge(parking)
    task = asyncio.create_task(sink.request("roots/list", None))
    await settle()
    state = input_required(sink.exchange.stream)["result"]["requestState"]
    parking.take(state).resume(exchange(2), {"q1": answer})
    assert await task == {}


async def test_resume_makes_the_calls_task_own_the_new_stream(parking: Parking) -> None:
    sink = bridge(parking)
    sink.task = asyncio.create_task(sink.request("roots/list", None))
    await settle()
    retry = exchange(2)
    parking.take(input_required(sink.exchange.stream)["result"]["requestState"]).resume(retry, {"q1": {"roots": []}})
    assert retry.stream.owner is sink.task
    assert await sink.task == {"roots": []}


async def test_unanswered_questions_are_asked_again_on_the_retry(parking: Parking) -> None:
    sink = bridge(parking)
    task = asyncio.create_task(sink.request("roots/list", None))
    await settle()
    state1 = input_required(sink.exchange.stream)["result"]["requestState"]
    retry = exchange(2)
    parking.take(state1).resume(retry, {"q9": {"ignored": True}})
    again = input_required(retry.stream)
    assert again["id"] == 2
    assert again["result"]["inputRequests"] == {"q1": {"method": "roots/list"}}
    state2 = again["result"]["requestState"]
    assert state2 != state1
    parking.take(state2).resume(exchange(3), {"q1": {"roots": [{"uri": "file:///"}]}})
    assert await task == {"roots": [{"uri": "file:///"}]}


async def test_questions_asked_while_parked_go_out_on_the_next_exchange(parking: Parking) -> None:
    sink = bridge(parking)
    q1 = asyncio.create_task(sink.request("roots/list", None))
    await settle()
    first = sink.exchange.stream
    q2 = asyncio.create_task(sink.request("sampling/createMessage", SAMPLE))
    await settle()
    # The first exchange already ended with q1; q2 waits for the retry.
    message = input_required(first)
    assert list(message["result"]["inputRequests"]) == ["q1"]
    assert len(parking) == 1

    retry = exchange(2)
    parking.take(message["result"]["requestState"]).resume(retry, {"q1": {"roots": []}})
    assert await q1 == {"roots": []}
    second = input_required(retry.stream)
    assert second["result"]["inputRequests"] == {"q2": {"method": "sampling/createMessage", "params": SAMPLE}}

    last = exchange(3)
    parking.take(second["result"]["requestState"]).resume(last, {"q2": {"content": "ok"}})
    assert await q2 == {"content": "ok"}
    assert last.stream.empty and not last.stream.closed
    assert len(parking) == 0


async def test_all_open_questions_go_out_together_on_a_retry_that_answers_none(parking: Parking) -> None:
    sink = bridge(parking)
    q1 = asyncio.create_task(sink.request("roots/list", None))
    await settle()
    q2 = asyncio.create_task(sink.request("sampling/createMessage", SAMPLE))
    await settle()
    state = input_required(sink.exchange.stream)["result"]["requestState"]
    retry = exchange(2)
    parking.take(state).resume(retry, {})
    both = input_required(retry.stream)["result"]
    assert both["inputRequests"] == {
        "q1": {"method": "roots/list"},
        "q2": {"method": "sampling/createMessage", "params": SAMPLE},
    }
    parking.take(both["requestState"]).resume(exchange(3), {"q1": {"a": 1}, "q2": {"b": 2}})
    assert await q1 == {"a": 1}
    assert await q2 == {"b": 2}


async def test_a_cancelled_question_is_not_asked_again(parking: Parking) -> None:
    sink = bridge(parking)
    task = asyncio.create_task(sink.request("roots/list", None))
    await settle()
    state = input_required(sink.exchange.stream)["result"]["requestState"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    retry = exchange(2)
    parking.take(state).resume(retry, {})
    assert retry.stream.empty
    assert not retry.stream.closed
    assert len(parking) == 0


async def test_asking_on_a_closed_exchange_waits_without_parking(parking: Parking) -> None:
    sink = bridge(parking)
    sink.exchange.stream.close()  # e.g. the client went away
    task = asyncio.create_task(sink.request("roots/list", None))
    await settle()
    assert sink.exchange.stream.empty
    assert len(parking) == 0
    assert not task.done()
    await cancel(task)


@pytest.mark.parametrize(
    ("method", "params", "capabilities"),
    [
        ("sampling/createMessage", SAMPLE, {}),
        ("roots/list", None, {"sampling": {}}),
        ("elicitation/create", {"message": "name?"}, {}),
        ("elicitation/create", {"mode": "url", "url": "https://x.test", "elicitationId": "e"}, {"elicitation": {}}),
    ],
)
async def test_missing_capability_raises_before_anything_is_pushed(
    parking: Parking, spawner: Spawner, method: str, params: dict[str, Any] | None, capabilities: dict[str, Any]
) -> None:
    sink = bridge(parking, capabilities)
    with pytest.raises(MissingClientCapability):
        await sink.request(method, params)
    assert sink.exchange.stream.empty
    assert not sink.exchange.stream.closed
    assert len(parking) == 0
    assert spawner.pending == []


async def test_a_refused_question_does_not_use_up_a_key(parking: Parking) -> None:
    sink = bridge(parking, {"roots": {}})
    with pytest.raises(MissingClientCapability):
        await sink.request("sampling/createMessage", SAMPLE)
    task = asyncio.create_task(sink.request("roots/list", None))
    await settle()
    assert list(input_required(sink.exchange.stream)["result"]["inputRequests"]) == ["q1"]
    await cancel(task)
