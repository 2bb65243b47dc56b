"""The retry policy: retries what it is told to, gives up when asked, stops waiting on stop."""

from __future__ import annotations

import threading
import time

import pytest

from ctrlgpt.retry import Backoff, retrying


class Away(RuntimeError):
    pass


def test_retries_until_the_call_works() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Away("not yet")
        return "ok"

    assert retrying(Away, what="flaky", first_delay_s=0.01, max_delay_s=0.02)(flaky) == "ok"
    assert len(calls) == 3


def test_other_errors_pass_through_at_once() -> None:
    calls = []

    def broken() -> None:
        calls.append(1)
        raise KeyError("a bug, not an outage")

    with pytest.raises(KeyError):
        retrying(Away, what="broken", first_delay_s=0.01)(broken)
    assert len(calls) == 1


def test_gives_up_after_its_deadline_with_the_last_error() -> None:
    def never() -> None:
        raise Away("still away")

    began = time.monotonic()
    with pytest.raises(Away, match="still away"):
        retrying(Away, what="never", give_up_after_s=0.3, first_delay_s=0.05, max_delay_s=0.05)(never)
    assert time.monotonic() - began < 2.0


def test_a_stop_ends_the_wait_early() -> None:
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()

    def never() -> None:
        raise Away("away")

    began = time.monotonic()
    with pytest.raises(Away):
        retrying(Away, what="never", stop=stop, first_delay_s=60.0, max_delay_s=60.0)(never)
    assert time.monotonic() - began < 5.0


def test_backoff_grows_with_jitter_up_to_its_cap_and_resets() -> None:
    backoff = Backoff(first_delay_s=1.0, max_delay_s=8.0)
    delays = [backoff.next_delay() for _ in range(8)]
    assert all(0.0 <= d <= 8.0 for d in delays)
    assert delays[0] <= 2.0  # first delay plus at most one delay of jitter
    assert delays[1] >= 2.0 and delays[2] >= 4.0  # doubling under the jitter
    assert delays[3:] == [8.0] * 5  # capped
    backoff.reset()
    assert backoff.next_delay() <= 2.0
