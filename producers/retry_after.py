"""Retry-After (RFC 9110 §10.2.3): how long a 429 or 503 asks the crawler to leave the host alone."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["HONOURED_STATUSES", "retry_after_s"]

# The answers whose Retry-After means "come back later"; on a redirect it means something else.
HONOURED_STATUSES = frozenset({429, 503})


def retry_after_s(value: str | None, *, now: datetime, cap_s: float) -> float | None:
    """Seconds to wait, from delta-seconds or an HTTP date, clamped to [0, cap_s].

    None when the header is absent or unreadable: the caller then falls back to its own backoff.
    """
    if not value or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # RFC 5322 "-0000": the date is in UTC
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), cap_s)
