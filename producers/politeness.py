"""Per-origin politeness state: when an origin may be fetched next, how many fetches it has in flight,
and which origins are down. `Politeness` is not thread-safe: the crawler's fetch threads share one
lock over it.
"""

from __future__ import annotations

__all__ = ["Politeness", "Unreachable"]


class Politeness:
    """When each origin may be fetched next: at least `delay` after its previous fetch began or ended, not while
    paused, and not while it has `cap` fetches in flight."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._paused_until: dict[str, float] = {}
        self._in_flight: dict[str, int] = {}

    def may_start(self, origin: str, delay: float, cap: int, now: float) -> float | None:
        """Seconds to wait before a fetch from `origin` may start, or None while it has `cap` fetches in flight."""
        if self._in_flight.get(origin, 0) >= cap:
            return None
        return self.wait_s(origin, delay, now)

    def start(self, origin: str, now: float) -> None:
        """A fetch from `origin` begins: the next one waits its delay from now, too."""
        self._in_flight[origin] = self._in_flight.get(origin, 0) + 1
        self.mark(origin, now)

    def finish(self, origin: str, now: float) -> None:
        self._in_flight[origin] -= 1
        self.mark(origin, now)

    def wait_s(self, origin: str, delay: float, now: float) -> float:
        last = self._last.get(origin)
        after_last = 0.0 if last is None else last + delay - now
        return max(0.0, after_last, self._paused_until.get(origin, 0.0) - now)

    def mark(self, origin: str, now: float) -> None:
        self._last[origin] = now

    def pause(self, origin: str, until: float) -> None:
        """No fetch from `origin` before `until` (a Retry-After), whatever request asks for it."""
        self._paused_until[origin] = max(until, self._paused_until.get(origin, 0.0))


class Unreachable:
    """Origins that recently failed every attempt to connect, and why."""

    def __init__(self, cooldown_s: float) -> None:
        self._cooldown_s = cooldown_s
        self._down: dict[str, tuple[float, str]] = {}

    def mark(self, origin: str, reason: str, now: float) -> None:
        self._down[origin] = (now + self._cooldown_s, reason)

    def clear(self, origin: str) -> None:
        self._down.pop(origin, None)

    def reason(self, origin: str, now: float) -> str | None:
        """Why `origin` is not worth trying now, or None if it is."""
        until, why = self._down.get(origin, (0.0, ""))
        return f"{origin} unreachable {until - now:.0f}s more after: {why}" if now < until else None
