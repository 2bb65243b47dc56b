"""The one retry policy of ctrlgpt, for dependencies that are away (Kafka, Elasticsearch, doccano).

An outage is a pause, not a crash: a caller waits with exponential back-off and full
jitter (so that workers that lost the same server do not come back in step), logs every
wait, and stops waiting the moment its service is asked to stop. Two shapes:

- `retrying(...)`: wrap a call that either works or raises (tenacity's `Retrying`);
- `Backoff`: the delays alone, for loops that must keep doing something else while they
  wait (a consumer keeps polling Kafka with its partitions paused, say).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
import tenacity

__all__ = ["Backoff", "retrying"]

log = structlog.get_logger()

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0


def _wait(first: float, max_delay: float) -> tenacity.wait.wait_base:
    return tenacity.wait_exponential_jitter(multiplier=first, max=max_delay, jitter=first)


def retrying(
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    *,
    what: str,
    stop: threading.Event | None = None,
    give_up_after_s: float | None = None,
    first_delay_s: float = FIRST_DELAY_S,
    max_delay_s: float = MAX_DELAY_S,
) -> tenacity.Retrying:
    """Retry while the call raises `retry_on`; other exceptions pass through at once.

    Waits forever unless `give_up_after_s` is set (then the last exception is re-raised) or
    `stop` is set (the wait ends early and the last exception is re-raised).
    """
    stops: list[tenacity.stop.stop_base] = []
    if give_up_after_s is not None:
        stops.append(tenacity.stop_after_delay(give_up_after_s))
    if stop is not None:
        stops.append(tenacity.stop_when_event_set(stop))

    def _log_wait(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "retry.waiting",
            what=what,
            attempt=state.attempt_number,
            error=str(error),
            retry_in_s=round(state.upcoming_sleep, 2),
        )

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(retry_on),
        wait=_wait(first_delay_s, max_delay_s),
        stop=tenacity.stop_any(*stops) if stops else tenacity.stop_never,
        sleep=stop.wait if stop is not None else tenacity.nap.sleep,
        before_sleep=_log_wait,
        reraise=True,
    )


@dataclass
class Backoff:
    """Delays of the same policy, one per failed attempt; `reset()` after a success."""

    first_delay_s: float = FIRST_DELAY_S
    max_delay_s: float = MAX_DELAY_S
    attempts: int = 0
    _wait: Callable[[tenacity.RetryCallState], float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._wait = _wait(self.first_delay_s, self.max_delay_s)

    def next_delay(self) -> float:
        """The delay before the next attempt (grows with each call until `reset()`)."""
        self.attempts += 1
        state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = self.attempts
        return float(self._wait(state))

    def reset(self) -> None:
        self.attempts = 0
