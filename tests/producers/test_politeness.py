"""Per-origin politeness delays and unreachable-origin cooldowns."""

from __future__ import annotations

from producers.politeness import Politeness, Unreachable


def test_an_origin_waits_out_its_delay_and_others_do_not() -> None:
    clock = Politeness()
    assert clock.wait_s("http://a.test", 2.0, now=100.0) == 0.0
    clock.mark("http://a.test", now=100.0)
    assert clock.wait_s("http://a.test", 2.0, now=100.5) == 1.5
    assert clock.wait_s("http://a.test", 2.0, now=103.0) == 0.0
    assert clock.wait_s("http://b.test", 2.0, now=100.5) == 0.0


def test_a_paused_origin_waits_until_the_pause_ends_whatever_its_delay() -> None:
    clock = Politeness()
    clock.pause("http://a.test", until=130.0)
    assert clock.wait_s("http://a.test", 0.0, now=100.0) == 30.0
    clock.pause("http://a.test", until=110.0)  # a shorter pause does not cut a longer one short
    assert clock.wait_s("http://a.test", 0.0, now=100.0) == 30.0
    assert clock.wait_s("http://b.test", 0.0, now=100.0) == 0.0
    assert clock.wait_s("http://a.test", 0.0, now=131.0) == 0.0


def test_an_unreachable_origin_is_skipped_until_its_cooldown_ends_or_it_answers() -> None:
    down = Unreachable(cooldown_s=60.0)
    assert down.reason("http://a.test", now=0.0) is None
    down.mark("http://a.test", "connection refused", now=10.0)
    reason = down.reason("http://a.test", now=40.0)
    assert reason is not None and "connection refused" in reason and "http://a.test" in reason
    assert down.reason("http://b.test", now=40.0) is None
    assert down.reason("http://a.test", now=70.0) is None
    down.mark("http://a.test", "connection refused", now=100.0)
    down.clear("http://a.test")
    assert down.reason("http://a.test", now=101.0) is None


def test_an_origin_at_its_cap_waits_for_a_fetch_to_finish_then_for_its_delay() -> None:
    clock = Politeness()
    assert clock.may_start("http://a.test", 1.0, cap=2, now=100.0) == 0.0
    clock.start("http://a.test", now=100.0)
    assert clock.may_start("http://a.test", 1.0, cap=2, now=100.5) == 0.5  # the delay counts from a fetch's start
    clock.start("http://a.test", now=101.0)
    assert clock.may_start("http://a.test", 1.0, cap=2, now=105.0) is None
    assert clock.may_start("http://b.test", 1.0, cap=2, now=105.0) == 0.0
    clock.finish("http://a.test", now=106.0)
    assert clock.may_start("http://a.test", 1.0, cap=2, now=106.5) == 0.5  # ... and from its end
    assert clock.may_start("http://a.test", 1.0, cap=2, now=107.0) == 0.0
