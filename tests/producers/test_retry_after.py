"""Retry-After parsing: delta-seconds, HTTP dates, the cap, and what is not a Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from producers.retry_after import retry_after_s

NOW = datetime(2026, 11, 22, 4, 0, 0, tzinfo=UTC)


def test_delta_seconds() -> None:
    assert retry_after_s("7", now=NOW, cap_s=60) == 7.0
    assert retry_after_s(" 0 ", now=NOW, cap_s=60) == 0.0


def test_http_date_is_the_time_left_until_it() -> None:
    assert retry_after_s("Sun, 22 Nov 2026 04:00:30 GMT", now=NOW, cap_s=60) == 30.0


def test_a_date_in_the_past_means_now() -> None:
    assert retry_after_s("Sun, 22 Nov 2026 03:00:00 GMT", now=NOW, cap_s=60) == 0.0


def test_the_wait_is_capped() -> None:
    assert retry_after_s("86400", now=NOW, cap_s=120) == 120.0
    assert retry_after_s("Mon, 23 Nov 2026 04:00:00 GMT", now=NOW, cap_s=120) == 120.0


@pytest.mark.parametrize("value", [None, "", "  ", "soon", "-5", "1.5"])
def test_absent_or_unreadable_is_none(value: str | None) -> None:
    assert retry_after_s(value, now=NOW, cap_s=60) is None
