"""The one retry layer for HTTP model calls, shared by every SDK backend, sync and async.

Why here and not in the SDK: both official SDKs can retry on their own, but
then a second layer (ours, the user's, a proxy's) multiplies the attempts,
their cap on ``Retry-After`` is not ours, their backoff sleep cannot be
cancelled with a `CancelToken`, and they know nothing about a stream whose
text was already shown to the user. So every SDK client looplet builds is
created with ``max_retries=0``, and this module owns the whole policy:

- what is retried is decided by the backend's classifier (see
  `looplet.backends.faults`): 429 rate limits, 500/502/503/504, 529
  overloaded, timeouts and dropped connections. Auth, quota, bad requests,
  context-length errors and refusals are raised at once;
- the wait is the server's hint (``retry-after-ms``, ``Retry-After`` in
  seconds or as an HTTP date) capped at `RetryPolicy.max_retry_after`, or
  else exponential backoff with jitter;
- the number of attempts is ``1 + max_retries``, counted here and nowhere else;
- a sync wait sleeps on the request's `CancelToken`, so cancelling returns at
  once; an async wait is ``asyncio.sleep`` (task cancellation works) and also
  notices the token;
- the run's deadline (``LLMRequest.deadline``, a ``time.monotonic()`` value)
  is never slept past: when the next attempt could not start before it, the
  call gives up at once with an `LLMError` of kind ``timeout`` that says so.
  The backends also bound each attempt's SDK timeout by the time left.

The bookkeeping is one sans-IO class, `RetryState`; `call_with_retries` and
`acall_with_retries` are its two thin drivers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import ConfigError, DeadlineReached, LLMError
from ..redaction import redact_text
from ..tools.context import CancelToken
from .faults import Failure, parse_retry_after

__all__ = [
    "DeadlineReached",
    "RetryPolicy",
    "RetryState",
    "call_with_retries",
    "acall_with_retries",
    "parse_retry_after",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How often an async backoff looks at the cancel token.
_ASYNC_POLL_S = 0.02
#: Jitter source shared by all calls (seeding a new one costs more than a whole request build).
_RNG = random.Random()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient model-call failures are retried.

    Attributes:
        max_retries: retries after the first attempt (so ``1 + max_retries``
            requests at most for one model call).
        initial_delay: the first backoff, in seconds, when the server gives no hint.
        multiplier: each further backoff is this many times longer...
        max_delay: ...up to this many seconds.
        jitter: the fraction of each backoff drawn at random (0 to 1), so many
            clients failing together do not retry in lockstep.
        max_retry_after: a server hint longer than this is cut to it.
        deadline_s: give up instead of waiting past this many seconds since
            the first attempt (None: no overall limit).
    """

    max_retries: int = 3
    initial_delay: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 20.0
    jitter: float = 0.25
    max_retry_after: float = 60.0
    deadline_s: float | None = None

    def __post_init__(self) -> None:
        retries = self.max_retries
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"max_retries must be a whole number >= 0, got {self.max_retries!r}")
        for name in ("initial_delay", "max_delay", "max_retry_after"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0 seconds, got {getattr(self, name)!r}")
        if not self.multiplier >= 1:
            raise ConfigError(f"multiplier must be >= 1, got {self.multiplier!r}")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"jitter must be between 0 and 1, got {self.jitter!r}")
        if self.deadline_s is not None and not self.deadline_s > 0:
            raise ConfigError(f"deadline_s must be positive, got {self.deadline_s!r}")

    def backoff(self, retry: int, rng: random.Random) -> float:
        """The wait before retry number `retry` (1-based) when the server gave no hint."""
        base = min(self.max_delay, self.initial_delay * self.multiplier ** (retry - 1))
        return base * (1.0 - self.jitter * rng.random())

    def wait_for(self, retry: int, hint: float | None, rng: random.Random) -> float:
        """The wait before retry `retry`: the server's hint (capped) if it sent one, else backoff."""
        if hint is not None:
            return min(max(hint, 0.0), self.max_retry_after)
        return self.backoff(retry, rng)


class RetryState:
    """The bookkeeping of one model call's attempts, with no I/O.

    After each failed attempt, `after_failure` says how long to wait before
    the next one, or returns the error to raise.
    """

    __slots__ = ("policy", "what", "attempts", "deadline", "failures", "_started", "_rng")

    def __init__(
        self,
        policy: RetryPolicy,
        what: str,
        rng: random.Random | None = None,
        *,
        deadline: float | None = None,
    ) -> None:
        self.policy = policy
        self.what = what
        self.attempts = 0
        self.deadline = deadline
        #: every failed attempt, oldest first (what `LLMResponse.retries` reports)
        self.failures: list[dict[str, Any]] = []
        self._started = time.monotonic()
        self._rng = rng or _RNG

    def start_attempt(self) -> LLMError | None:
        """Count the next attempt; returns the error to raise instead if the run's deadline has passed."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return DeadlineReached(f"{self.what} was not made: the run's deadline is reached")
        self.attempts += 1
        return None

    def after_failure(self, failure: Failure) -> float | LLMError:
        """Seconds to wait before trying again, or the `LLMError` to raise now."""
        outcome = self._next(failure)
        error = failure.error
        cause = error.kind if error.status is None else f"{error.kind} {error.status}"
        self.failures.append(
            {
                "attempt": self.attempts,
                "cause": cause,
                "error": redact_text(str(error))[:500],
                "wait_s": None if isinstance(outcome, LLMError) else round(outcome, 3),
            }
        )
        if isinstance(outcome, LLMError):
            outcome.retries = list(self.failures)
        return outcome

    def ended(self, error: LLMError) -> LLMError:
        """`error` (the deadline or a cancellation cut the retries short), carrying the failures."""
        error.retries = list(self.failures)
        return error

    def _next(self, failure: Failure) -> float | LLMError:
        error = failure.error
        if not error.retriable:
            return error
        retry = self.attempts  # the retry we would make next is number `attempts`
        if retry > self.policy.max_retries:
            return _gave_up(error, self.attempts, "")
        delay = self.policy.wait_for(retry, failure.retry_after, self._rng)
        now = time.monotonic()
        if self.deadline is not None and now + delay >= self.deadline:
            return _out_of_time(error, self.attempts, delay)
        budget = self.policy.deadline_s
        if budget is not None and now - self._started + delay > budget:
            return _gave_up(error, self.attempts, f", the {budget:g}s retry deadline would pass")
        log.info(
            "%s failed (%s); retry %d of %d in %.2fs",
            self.what,
            error,
            retry,
            self.policy.max_retries,
            delay,
        )
        return delay


def _noted(result: T, state: RetryState) -> T:
    """`result`, carrying the attempts that failed before it (when it can: an `LLMResponse`)."""
    if state.failures and hasattr(result, "retries"):
        result.retries = list(state.failures)
    return result


def _gave_up(error: LLMError, attempts: int, why: str) -> LLMError:
    noun = "attempt" if attempts == 1 else "attempts"
    final = LLMError(
        f"{error.args[0] if error.args else error} (gave up after {attempts} {noun}{why})",
        kind=error.kind,
        status=error.status,
        request_id=error.request_id,
        retriable=error.retriable,
    )
    return final


def _out_of_time(error: LLMError, attempts: int, delay: float) -> DeadlineReached:
    """The error when the run's deadline comes before the next attempt could start."""
    noun = "attempt" if attempts == 1 else "attempts"
    return DeadlineReached(
        f"{error.args[0] if error.args else error} (gave up after {attempts} {noun}: the run's deadline "
        f"is reached before the next attempt could start, which was due in {delay:.2f}s)",
        status=error.status,
        request_id=error.request_id,
    )


def _detached(error: LLMError) -> LLMError:
    """`error` without its chain: the SDK exception behind it may quote the request or a key."""
    error.__cause__ = None
    error.__context__ = None
    error.__suppress_context__ = True
    return error


def _cancelled(what: str, token: CancelToken) -> LLMError:
    reason = token.reason or "the cancel token fired"
    return LLMError(f"{what} was cancelled while waiting to retry ({reason})", kind="cancelled")


def call_with_retries(
    attempt: Callable[[], T],
    classify: Callable[[BaseException], Failure | None],
    *,
    policy: RetryPolicy,
    cancel_token: CancelToken | None = None,
    deadline: float | None = None,
    what: str = "model call",
) -> T:
    """Run `attempt` until it succeeds or `policy` says stop.

    `classify` turns what `attempt` raised into a `Failure`; an exception it
    does not know (returns None for) is re-raised unchanged. `deadline` is the
    run's, as a ``time.monotonic()`` value: no wait ends past it.
    """
    state = RetryState(policy, what, deadline=deadline)
    while True:
        late = state.start_attempt()
        if late is not None:
            raise state.ended(late)
        try:
            return _noted(attempt(), state)
        except Exception as exc:  # classified below, outside the except block
            failure = classify(exc)
            if failure is None:
                raise
        outcome = state.after_failure(failure)
        if isinstance(outcome, LLMError):
            raise _detached(outcome)
        if cancel_token is None:
            time.sleep(outcome)
        elif cancel_token.wait(outcome):
            raise state.ended(_cancelled(what, cancel_token))


async def acall_with_retries(
    attempt: Callable[[], Awaitable[T]],
    classify: Callable[[BaseException], Failure | None],
    *,
    policy: RetryPolicy,
    cancel_token: CancelToken | None = None,
    deadline: float | None = None,
    what: str = "model call",
) -> T:
    """The async twin of `call_with_retries`; the wait is ``asyncio.sleep``."""
    state = RetryState(policy, what, deadline=deadline)
    while True:
        late = state.start_attempt()
        if late is not None:
            raise state.ended(late)
        try:
            return _noted(await attempt(), state)
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
        outcome = state.after_failure(failure)
        if isinstance(outcome, LLMError):
            raise _detached(outcome)
        try:
            await _async_wait(outcome, cancel_token, what)
        except LLMError as exc:
            raise state.ended(exc) from None


async def _async_wait(delay: float, token: CancelToken | None, what: str) -> None:
    if token is None:
        await asyncio.sleep(delay)
        return
    end = time.monotonic() + delay
    while True:
        if token.cancelled:
            raise _cancelled(what, token)
        left = end - time.monotonic()
        if left <= 0:
            return
        await asyncio.sleep(min(left, _ASYNC_POLL_S))
