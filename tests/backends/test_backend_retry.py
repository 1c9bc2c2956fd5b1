"""RELIABILITY rows C1, C3, C4 and C5: what is retried, how long it waits, how often, and cancelling.

Attempts are counted at the server. A wait is checked only from below (the
gap between the server's answer and the next request is at least the wait),
which a loaded machine cannot break; how soon a cancelled or out-of-time
call returns is checked by order and by counts: it stopped before the next
attempt reached the server.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import threading
import time
from typing import Any

import pytest
from backend_kit import (
    FAST,
    MODES,
    PROVIDERS,
    Greeter,
    aclose,
    backend,
    complete,
    fail,
    fault_url,
    reply,
    run,
)
from hypothesis import event, given
from hypothesis import strategies as st
from loopback_faults import Canned, anthropic_error, anthropic_message, openai_completion, openai_error

from looplet import CancelToken, LLMError, Message, composable_loop
from looplet.backends.faults import Failure, parse_retry_after
from looplet.backends.protocol import LLMRequest
from looplet.backends.retry import DeadlineReached, RetryPolicy, RetryState
from looplet.errors import ConfigError

DONE = reply(("done", {"answer": "ok"}))


def _gaps(records: list[dict[str, Any]]) -> list[float]:
    return [b["started_at"] - a["ended_at"] for a, b in zip(records, records[1:], strict=False)]


def _request(token: CancelToken | None = None, deadline: float | None = None) -> LLMRequest:
    return LLMRequest(messages=[Message("user", "hi")], cancel_token=token, deadline=deadline)


def _rate_limited(provider: str, seconds: int, times: int = 4) -> list[Canned]:
    """`times` 429 answers asking the client to wait `seconds` (whole seconds, as Retry-After says)."""
    body = (
        openai_error("slow down", type="rate_limit_error")
        if provider == "openai"
        else anthropic_error("slow down", type="rate_limit_error")
    )
    return [Canned(429, {"retry-after": str(seconds)}, body) for _ in range(times)]


def _ok_body(provider: str) -> dict[str, Any]:
    if provider == "openai":
        return openai_completion(calls=[("c1", "done", {"answer": "ok"})], finish="tool_calls")
    return anthropic_message(calls=[("c1", "done", {"answer": "ok"})], stop="tool_use")


# -- C1: rate limits -----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_rate_limit_waits_for_the_hint_then_succeeds(llm_server: Any, provider: str, mode: str) -> None:
    llm_server.script(fail(429, retry_after=0.2, times=2), DONE)
    llm = backend(provider, llm_server.base_url(provider), is_async=mode == "async")
    _, result = run(llm, is_async=mode == "async", tools=Greeter().tools, task="t")
    assert result.stop_reason == "done"
    records = llm_server.records()
    assert [r["status"] for r in records] == [429, 429, 200]
    assert all(gap >= 0.2 for gap in _gaps(records)), _gaps(records)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_attempts_equal_one_plus_the_configured_retries(llm_server: Any, provider: str) -> None:
    llm_server.script(fail(429, retry_after=0.01, times=None))
    policy = RetryPolicy(max_retries=3, initial_delay=0.01, jitter=0.0)
    _, result = run(
        backend(provider, llm_server.base_url(provider), retry=policy),
        is_async=False,
        tools=Greeter().tools,
        task="t",
    )
    assert llm_server.attempts == 4
    assert result.stop_reason == "llm_error"
    error = result.error
    assert isinstance(error, LLMError) and (error.kind, error.status) == ("rate_limit", 429)
    assert "gave up after 4 attempts" in str(error)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_retry_after_in_whole_seconds_is_honoured(fault_server: Any, provider: str) -> None:
    body = (
        openai_error("slow down", type="rate_limit_error")
        if provider == "openai"
        else anthropic_error("slow down", type="rate_limit_error")
    )
    fault_server.queue(Canned(429, {"retry-after": "1"}, body), Canned(body=_ok_body(provider)))
    llm = backend(provider, fault_url(provider, fault_server.url))
    _, result = run(llm, is_async=False, tools=Greeter().tools, task="t")
    assert result.stop_reason == "done" and fault_server.attempts == 2
    first, second = fault_server.seen
    assert second.at - first.answered_at >= 1.0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_retry_after_as_an_http_date_is_honoured(fault_server: Any, provider: str) -> None:
    not_before = math.floor(time.time()) + 1.0
    header = email.utils.formatdate(not_before, usegmt=True)
    body = (
        openai_error("later", type="rate_limit_error")
        if provider == "openai"
        else anthropic_error("later", type="rate_limit_error")
    )
    fault_server.queue(Canned(429, {"retry-after": header}, body), Canned(body=_ok_body(provider)))
    _, result = run(
        backend(provider, fault_url(provider, fault_server.url)),
        is_async=False,
        tools=Greeter().tools,
        task="t",
    )
    assert result.stop_reason == "done" and fault_server.attempts == 2
    assert fault_server.seen[1].at >= not_before - 0.01


def test_a_hint_over_the_cap_is_cut_to_the_cap(llm_server: Any) -> None:
    policy = RetryPolicy(max_retries=2, max_retry_after=0.2)
    state = RetryState(policy, "call")
    state.start_attempt()
    assert state.after_failure(Failure(LLMError("busy", kind="rate_limit", retriable=True), 120.0)) == 0.2

    llm_server.script(fail(429, retry_after=120, times=1), DONE)
    _, result = run(
        backend("openai", llm_server.openai_url, retry=policy),
        is_async=False,
        tools=Greeter().tools,
        task="t",
    )
    assert result.stop_reason == "done" and llm_server.attempts == 2
    (gap,) = _gaps(llm_server.records())
    assert 0.2 <= gap < 120  # the cap, never the hint (the test's own timeout guards the upper end)


# -- C3 / C4: server errors and overload -----------------------------------------------


@pytest.mark.parametrize("status", [500, 502])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_server_errors_back_off_exponentially(llm_server: Any, provider: str, status: int) -> None:
    llm_server.script(fail(status, times=2), DONE)
    policy = RetryPolicy(max_retries=2, initial_delay=0.05, multiplier=2.0, jitter=0.0)
    _, result = run(
        backend(provider, llm_server.base_url(provider), retry=policy),
        is_async=False,
        tools=Greeter().tools,
        task="t",
    )
    assert result.stop_reason == "done" and llm_server.attempts == 3
    first, second = _gaps(llm_server.records())
    assert first >= 0.05 and second >= 0.10


@pytest.mark.parametrize("status", [503, 529])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_unavailable_and_overloaded_are_retried(
    llm_server: Any, provider: str, mode: str, status: int
) -> None:
    llm_server.script(fail(status, retry_after=0.02, times=2), DONE)
    llm = backend(provider, llm_server.base_url(provider), is_async=mode == "async")
    _, result = run(llm, is_async=mode == "async", tools=Greeter().tools, task="t")
    assert result.stop_reason == "done"
    assert [r["status"] for r in llm_server.records()] == [status, status, 200]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_exhausted_retries_keep_the_status_and_request_id(
    fault_server: Any, provider: str, mode: str
) -> None:
    header = "x-request-id" if provider == "openai" else "request-id"
    body = (
        openai_error("busy", type="server_error")
        if provider == "openai"
        else anthropic_error("busy", type="overloaded_error")
    )
    fault_server.queue(*[Canned(503, {header: f"req_{n}", "retry-after-ms": "10"}, body) for n in (1, 2, 3)])
    llm = backend(provider, fault_url(provider, fault_server.url), is_async=mode == "async")
    _, result = run(llm, is_async=mode == "async", tools=Greeter().tools, task="t")
    assert fault_server.attempts == FAST.max_retries + 1
    assert result.stop_reason == "llm_error"
    error = result.error
    assert isinstance(error, LLMError)
    assert (error.status, error.request_id, error.retriable) == (503, "req_3", True)
    # Anthropic documents overloaded_error as "temporarily overloaded"; its type wins over a relayed 503
    assert error.kind == ("server" if provider == "openai" else "overloaded")
    assert "req_3" in result.detail and "503" in result.detail


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_run_stopped_by_server_errors_resumes_from_its_history(llm_server: Any, provider: str) -> None:
    class BreakServer:  # llmock answers a queued fail before any queued reply, so queue it later
        def post_dispatch(self, *args: Any) -> None:
            llm_server.script(fail(500, times=3))

    llm_server.script(reply(("greet", {"name": "Alice"})))
    kit = Greeter()
    loop = composable_loop(
        backend(provider, llm_server.base_url(provider)),
        tools=kit.tools,
        task="Greet Alice.",
        hooks=[BreakServer()],
    )
    steps = list(loop)
    assert loop.result is not None and loop.result.stop_reason == "llm_error"
    assert len(steps) == 1 and kit.greeted == ["Alice"]

    llm_server.script(DONE)
    resumed = composable_loop(
        backend(provider, llm_server.base_url(provider)), tools=kit.tools, history=loop.history
    )
    list(resumed)
    assert resumed.result is not None and resumed.result.stop_reason == "done"
    assert kit.greeted == ["Alice"]  # nothing ran twice
    last = llm_server.bodies()[-1]["messages"]
    assert "Hello, Alice!" in str(last)


# -- C5: timeouts, refused connections, cancelling ------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_slow_headers_time_out_each_attempt_then_retry(fault_server: Any, provider: str, mode: str) -> None:
    fault_server.queue(Canned(delay=2.0, body=_ok_body(provider)), Canned(body=_ok_body(provider)))
    llm = backend(provider, fault_url(provider, fault_server.url), is_async=mode == "async", timeout=0.2)
    _, result = run(llm, is_async=mode == "async", tools=Greeter().tools, task="t")
    # a second request means the first attempt was given up at its 0.2 s timeout, not waited out
    assert result.stop_reason == "done" and fault_server.attempts == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_stalled_stream_times_out_and_is_retried(llm_server: Any, provider: str) -> None:
    llm_server.script(
        reply(("done", {"answer": "ok"})),
        {"type": "stream_fault", "kind": "stall", "after_chunks": 2, "stall_seconds": 1.0},
        DONE,
    )
    llm = backend(provider, llm_server.base_url(provider), stream=True, timeout=0.2)
    _, result = run(llm, is_async=False, tools=Greeter().tools, task="t")
    assert result.stop_reason == "done"
    assert llm_server.attempts == 2


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_connection_refused_is_retried_then_typed(provider: str, mode: str) -> None:
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again at once: nothing listens there
    llm = backend(provider, fault_url(provider, f"http://127.0.0.1:{port}"), is_async=mode == "async")
    with pytest.raises(LLMError) as caught:
        complete(llm, _request(), is_async=mode == "async")
    assert caught.value.kind == "connection" and caught.value.retriable
    assert "gave up after 3 attempts" in str(caught.value)


def _in_thread(work: Any) -> tuple[threading.Thread, list[Any]]:
    """Run `work()` in a thread; the list gets its result or the exception it raised."""
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(work())
        except BaseException as exc:  # handed to the test, which asserts on it
            out.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


@pytest.mark.parametrize("provider", PROVIDERS)
def test_cancelling_a_sync_backoff_stops_before_the_next_attempt(fault_server: Any, provider: str) -> None:
    fault_server.queue(*_rate_limited(provider, 30))
    token = CancelToken()
    llm = backend(provider, fault_url(provider, fault_server.url))
    thread, out = _in_thread(
        lambda: run(llm, is_async=False, tools=Greeter().tools, task="t", cancel_token=token)[1]
    )
    assert fault_server.wait_for_answers(1)
    token.cancel("user pressed stop")  # the client now waits 30 s for its second attempt
    thread.join(timeout=15)  # generous: half the server's hint
    assert not thread.is_alive(), "the backoff did not notice the cancel token"
    (result,) = out
    assert result.stop_reason == "cancelled" and "user pressed stop" in result.detail
    assert fault_server.attempts == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_cancelling_the_task_during_an_async_backoff_stops_before_the_next_attempt(
    fault_server: Any, provider: str
) -> None:
    fault_server.queue(*_rate_limited(provider, 30))
    llm = backend(provider, fault_url(provider, fault_server.url), is_async=True)

    async def main() -> None:
        task = asyncio.create_task(llm.complete(_request()))
        assert await asyncio.to_thread(fault_server.wait_for_answers, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=15)
        await aclose(llm)

    asyncio.run(main())
    assert fault_server.attempts == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_cancel_token_also_cuts_an_async_backoff(fault_server: Any, provider: str) -> None:
    fault_server.queue(*_rate_limited(provider, 30))
    llm = backend(provider, fault_url(provider, fault_server.url), is_async=True)
    token = CancelToken()

    async def main() -> LLMError:
        async with llm:
            call = asyncio.create_task(llm.complete(_request(token)))
            assert await asyncio.to_thread(fault_server.wait_for_answers, 1)
            token.cancel("stop")
            with pytest.raises(LLMError) as caught:
                await asyncio.wait_for(call, timeout=15)
        return caught.value

    error = asyncio.run(main())
    assert error.kind == "cancelled" and "stop" in str(error)
    assert fault_server.attempts == 1


def test_a_retry_deadline_bounds_the_whole_call(fault_server: Any) -> None:
    fault_server.queue(*_rate_limited("openai", 5))
    policy = RetryPolicy(max_retries=2, deadline_s=1.0)
    with pytest.raises(LLMError) as caught:
        backend("openai", fault_url("openai", fault_server.url), retry=policy).complete(_request())
    assert fault_server.attempts == 1  # a 5 s wait cannot fit in a 1 s budget: no second attempt
    assert caught.value.kind == "rate_limit" and "1s retry deadline" in str(caught.value)


# -- the run's deadline (LLMRequest.deadline) ------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_run_deadline_ends_a_retry_wait_it_cannot_outlast(
    fault_server: Any, provider: str, mode: str
) -> None:
    fault_server.queue(*_rate_limited(provider, 5))
    llm = backend(provider, fault_url(provider, fault_server.url), is_async=mode == "async")
    thread, out = _in_thread(
        lambda: complete(llm, _request(deadline=time.monotonic() + 0.5), is_async=mode == "async")
    )
    thread.join(timeout=4)  # generous: less than the server's 5 s hint
    assert not thread.is_alive(), "the retry wait outlasted the run's deadline"
    (error,) = out
    assert isinstance(error, DeadlineReached)  # an LLMError the loop can tell from a provider's timeout
    assert error.kind == "timeout" and error.status == 429
    assert "the run's deadline is reached before the next attempt could start" in str(error)
    assert "gave up after 1 attempt" in str(error)
    assert fault_server.attempts == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_attempt_times_out_within_the_time_left(fault_server: Any, provider: str, mode: str) -> None:
    # the answer would come after 3 s; the backend allows 10 s per attempt, the run 0.5 s in all
    fault_server.queue(Canned(delay=3.0, body=_ok_body(provider)), Canned(body=_ok_body(provider)))
    llm = backend(provider, fault_url(provider, fault_server.url), is_async=mode == "async", timeout=10.0)
    with pytest.raises(DeadlineReached) as caught:
        complete(llm, _request(deadline=time.monotonic() + 0.5), is_async=mode == "async")
    assert caught.value.kind == "timeout" and "the run's deadline is reached" in str(caught.value)
    assert fault_server.attempts == 1  # the slow attempt was cut, and no other was started


@pytest.mark.parametrize("provider", PROVIDERS)
def test_no_call_is_made_after_the_run_deadline(fault_server: Any, provider: str) -> None:
    llm = backend(provider, fault_url(provider, fault_server.url))
    with pytest.raises(DeadlineReached) as caught:
        llm.complete(_request(deadline=time.monotonic() - 1.0))
    assert caught.value.kind == "timeout" and "the run's deadline is reached" in str(caught.value)
    assert fault_server.attempts == 0


def test_the_retry_state_never_waits_past_the_run_deadline() -> None:
    busy = Failure(LLMError("busy", kind="rate_limit", status=429, retriable=True), retry_after=2.0)
    roomy = RetryState(RetryPolicy(), "call", deadline=time.monotonic() + 3600)
    assert roomy.start_attempt() is None
    assert roomy.after_failure(busy) == 2.0
    tight = RetryState(RetryPolicy(), "call", deadline=time.monotonic() + 1.0)
    assert tight.start_attempt() is None
    outcome = tight.after_failure(busy)
    assert isinstance(outcome, LLMError) and (outcome.kind, outcome.status) == ("timeout", 429)
    late = RetryState(RetryPolicy(), "call", deadline=time.monotonic() - 1.0)
    error = late.start_attempt()
    assert isinstance(error, LLMError) and error.kind == "timeout" and late.attempts == 0


# -- the policy itself ----------------------------------------------------------------------


def test_parse_retry_after_reads_ms_seconds_and_dates() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 7, usegmt=True)
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(7.0)
    assert parse_retry_after({"retry-after": email.utils.formatdate(now - 9, usegmt=True)}, now=now) == 0.0
    assert parse_retry_after({"retry-after-ms": "nope", "retry-after": "2"}) == 2.0
    for junk in ({}, {"retry-after": "soon"}, {"retry-after": "-4"}, None):
        assert parse_retry_after(junk) is None


_NOW = 1_700_000_000.0


@st.composite
def _retry_headers(draw: st.DrawFn) -> tuple[dict[str, str], str, float | None]:
    """Headers in one of the forms a server sends (or garbage), with the form and the wait it means."""
    form = draw(st.sampled_from(["ms", "seconds", "date", "negative", "junk", "empty"]))
    if form == "ms":
        ms = draw(st.integers(0, 10**7))
        return {"retry-after-ms": str(ms), "retry-after": draw(st.text(max_size=8))}, form, ms / 1000
    if form == "seconds":
        seconds = draw(st.integers(0, 10**6) | st.floats(0, 1e6, allow_nan=False))
        return {"Retry-After": f" {seconds} "}, form, float(seconds)
    if form == "date":
        ahead = draw(st.integers(-(10**6), 10**6))
        header = email.utils.formatdate(_NOW + ahead, usegmt=True)
        return {"retry-after": header}, form, float(max(ahead, 0))
    if form == "negative":
        value = draw(st.integers(-(10**6), -1))
        return {"retry-after-ms": str(value), "retry-after": str(value)}, form, None
    if form == "junk":
        text = draw(st.text(max_size=40).filter(_neither_number_nor_date))
        return {"retry-after-ms": text, "retry-after": text}, form, None
    names = st.sampled_from(["x-request-id", "content-type", "date"])
    other = draw(st.dictionaries(names, st.text(max_size=8)))
    return other, form, None  # "empty": no hint at all


def _neither_number_nor_date(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        try:
            return email.utils.parsedate_to_datetime(text) is None
        except (TypeError, ValueError, IndexError):
            return True
    return False


def test_parse_retry_after_reads_every_form_and_never_raises() -> None:
    reached: dict[str, int] = {}

    @given(_retry_headers())
    def check(case: tuple[dict[str, str], str, float | None]) -> None:
        headers, form, expected = case
        event(form)
        reached[form] = reached.get(form, 0) + 1
        value = parse_retry_after(headers, now=_NOW)
        if expected is None:
            assert value is None
        else:
            assert value == pytest.approx(expected)

    check()
    # every form, a usable hint above all, was really drawn (not 298 Nones out of 300)
    assert set(reached) == {"ms", "seconds", "date", "negative", "junk", "empty"}
    assert min(reached.values()) >= 20, reached


@given(st.integers(1, 30), st.floats(0, 1), st.integers(0, 2**32))
def test_backoff_grows_within_its_bounds(retry: int, jitter: float, seed: int) -> None:
    policy = RetryPolicy(initial_delay=0.5, multiplier=2.0, max_delay=20.0, jitter=jitter)
    base = min(20.0, 0.5 * 2.0 ** (retry - 1))
    delay = policy.backoff(retry, random.Random(seed))
    assert base * (1 - jitter) - 1e-9 <= delay <= base + 1e-9


def test_a_non_retriable_failure_is_raised_at_once() -> None:
    state = RetryState(RetryPolicy(max_retries=5), "call")
    state.start_attempt()
    error = LLMError("no", kind="auth", status=401)
    assert state.after_failure(Failure(error)) is error


@pytest.mark.parametrize(
    "bad",
    [
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"jitter": 2.0},
        {"multiplier": 0.5},
        {"initial_delay": -1},
        {"deadline_s": 0},
    ],
)
def test_a_policy_that_cannot_work_is_a_config_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(**bad)
