"""The rounds of a routed request after a failed first one (`hub.router`, module docstring step
3): tenacity's jittered exponential backoff between rounds, the retry rules of `hub.retry_rules`
(what is safe to send again), and the server's retry budget.

The router runs a request's first round itself; only when it fails is tenacity built here
(`later_rounds`), seeing that failure as its first attempt, so a request answered at once (nearly
all of them) pays nothing for the retry machinery, and a retried one goes through exactly the
same predicates, backoff and attempt numbers as if tenacity had run its first round too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import anyio
from tenacity import AsyncRetrying, RetryCallState, wait_random_exponential

from hub.admission import RetryBudget, ServerRejected
from hub.retry_rules import EventSink, Failure, classify_failure

if TYPE_CHECKING:
    from hub.router import _Call

__all__ = ["later_rounds", "may_retry", "no_more_rounds"]

# The router's logger: operators and tests filter on "hub.router".
logger = logging.getLogger("hub.router")

_T = TypeVar("_T")


async def later_rounds(
    call: _Call, budget: RetryBudget, events: EventSink, run_round: Callable[[], Awaitable[_T]], first: Exception
) -> _T:
    """The rounds after `call`'s first one failed with `first` (module docstring): each a
    `run_round()`, after a backoff, while `may_retry` and `no_more_rounds` allow; the retry
    budget's token a round holds is released when it ends.

    :raises Exception: the last round's failure (`first` when no other round may run).
    """
    retry = call.config.retry
    retrying = AsyncRetrying(
        stop=partial(no_more_rounds, call, budget, events),
        wait=wait_random_exponential(multiplier=retry.backoff_initial_seconds, max=retry.backoff_max_seconds),
        retry=partial(may_retry, call),
        sleep=anyio.sleep,
        reraise=True,
    )
    pending: Exception | None = first
    async for attempt in retrying:
        with attempt:
            if pending is not None:
                failed, pending = pending, None
                raise failed
            try:
                return await run_round()
            finally:
                if call.token:
                    call.token = False
                    budget.release()
    raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover


def may_retry(call: _Call, retry_state: RetryCallState) -> bool:
    """tenacity's retry predicate: whether the failure is safe to repeat (`no_more_rounds`
    then decides whether another round may run)."""
    outcome = retry_state.outcome
    exc = outcome.exception() if outcome is not None and outcome.failed else None
    if exc is None or isinstance(exc, ServerRejected):
        return False  # answered, or circuit open or queue full everywhere: fail fast, shed load
    failure = classify_failure(exc)
    return failure is not None and (failure is Failure.NOT_DELIVERED or call.repeatable)


def no_more_rounds(call: _Call, budget: RetryBudget, events: EventSink, retry_state: RetryCallState) -> bool:
    """tenacity's stop predicate, after `may_retry` agreed and the backoff was drawn: another
    round only when rounds are left, when the backoff ends before the request's deadline, and
    with a token from the server's retry budget (held from here to the end of the round)."""
    if retry_state.attempt_number >= call.config.retry.attempts:
        return True
    if retry_state.upcoming_sleep >= call.deadline.remaining():
        logger.info(
            "server %s: no time left for another round of %s (backoff %.2f s, %.2f s left)",
            call.server_id,
            call.original,
            retry_state.upcoming_sleep,
            call.deadline.remaining(),
        )
        return True
    if not budget.try_acquire():
        events.emit("on_budget_exhausted", call.server_id)
        logger.info("server %s: retry budget used up, not retrying %s", call.server_id, call.original)
        return True
    call.token = True
    events.emit("on_retry", call.server_id)
    return False
