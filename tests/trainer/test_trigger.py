"""The trigger policy alone: counts and times in, a decision out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from trainer.trigger import TriggerPolicy, TriggerState, command_is_stale, decide

POLICY = TriggerPolicy(min_labels=10, quiet_s=5.0, interval_s=100.0, interval_min_labels=3)


def state(**changes) -> TriggerState:
    values = {"now": 1000.0, "pending_labels": 0, "last_label_at": None, "last_run_at": 990.0}
    return TriggerState(**(values | changes))


def test_enough_labels_start_a_run_once_the_burst_is_quiet():
    assert decide(POLICY, state(pending_labels=10, last_label_at=990.0)).reason == "threshold"


def test_enough_labels_wait_out_the_quiet_period_and_say_when_to_look_again():
    decision = decide(POLICY, state(pending_labels=12, last_label_at=998.0))
    assert not decision.start and decision.recheck_in == pytest.approx(3.0)


def test_too_few_labels_and_no_interval_due_wait_for_new_events_only():
    decision = decide(POLICY, state(pending_labels=2, last_label_at=999.0))
    assert not decision.start and decision.recheck_in is None


def test_interval_with_enough_labels_starts_a_run():
    decision = decide(POLICY, state(now=1100.0, pending_labels=3, last_label_at=1000.0, last_run_at=990.0))
    assert decision.start and decision.reason == "interval"


def test_interval_not_yet_passed_says_when_it_will():
    decision = decide(POLICY, state(now=1000.0, pending_labels=3, last_label_at=900.0, last_run_at=950.0))
    assert not decision.start and decision.recheck_in == pytest.approx(50.0)


def test_interval_waits_for_the_quiet_period_too():
    decision = decide(POLICY, state(now=1200.0, pending_labels=4, last_label_at=1198.0, last_run_at=900.0))
    assert not decision.start and decision.recheck_in == pytest.approx(3.0)


def test_interval_off_never_starts_on_time():
    policy = TriggerPolicy(min_labels=10, interval_s=0.0, interval_min_labels=1)
    decision = decide(policy, state(now=1e9, pending_labels=9, last_label_at=0.0, last_run_at=0.0))
    assert not decision.start and decision.recheck_in is None


def test_an_operator_request_starts_a_run_with_no_label_and_no_quiet_wait():
    assert decide(POLICY, state(requested=True)).reason == "requested"
    assert decide(POLICY, state(requested=True, pending_labels=20, last_label_at=999.9)).reason == "requested"


@pytest.mark.parametrize("flag", ["running", "stopping"])
def test_nothing_starts_while_a_run_goes_on_or_the_worker_stops(flag):
    decision = decide(POLICY, state(requested=True, pending_labels=50, last_label_at=0.0, **{flag: True}))
    assert not decision.start and decision.recheck_in is None


def test_policy_refuses_nonsense():
    with pytest.raises(ValueError):
        TriggerPolicy(min_labels=0)
    with pytest.raises(ValueError):
        TriggerPolicy(min_labels=1, interval_s=-1)


def test_old_commands_are_stale():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert command_is_stale(now - timedelta(seconds=601), now, 600)
    assert not command_is_stale(now - timedelta(seconds=5), now, 600)
