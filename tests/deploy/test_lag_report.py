"""The text and JSON reports of `ctrlgpt lag`."""

from __future__ import annotations

from deploy.lag import format_duration, format_report, report_json
from streams import groups
from streams.consumer_lag import OffsetSample, evaluate_group, evaluate_partition


def test_durations_read_like_a_clock() -> None:
    assert format_duration(None) == "never"
    assert format_duration(0.4) == "0s"
    assert format_duration(75) == "1m15s"
    assert format_duration(7260) == "2h01m"


def group():
    stopped = evaluate_partition(
        [OffsetSample(0, 3, 10), OffsetSample(5, 3, 12)],
        now=100,
        unchanged_since=0,
        owned=False,
        stop_after_s=60,
        topic="ctrlgpt.pages.clean",
        partition=1,
    )
    fine = evaluate_partition(
        [OffsetSample(5, 8, 8)],
        now=5,
        unchanged_since=5,
        owned=False,
        stop_after_s=60,
        topic="ctrlgpt.pages.clean",
        partition=0,
    )
    return evaluate_group(groups.INDEX_SINK, [stopped, fine], state="EMPTY", members=0)


def test_table_shows_each_partition_and_the_group_status() -> None:
    text = format_report([group()])
    assert text.splitlines()[0].startswith(f"{groups.INDEX_SINK}: STOP (Burrow: ERR), state EMPTY, 0 members, lag 9")
    rows = [line.split() for line in text.splitlines()[2:4]]
    assert rows[0] == ["ctrlgpt.pages.clean", "0", "8", "8", "0", "OK", "0s"]
    assert rows[1] == ["ctrlgpt.pages.clean", "1", "3", "12", "9", "STOP", "never"]
    assert "ctrlgpt.pages.clean[1] STOP: no live member owns it" in text


def test_json_carries_the_same_figures() -> None:
    (data,) = report_json([group()])
    assert data["status"] == "STOP" and data["burrow_status"] == "ERR" and data["total_lag"] == 9
    assert [(p["partition"], p["lag"], p["status"]) for p in data["partitions"]] == [(0, 0, "OK"), (1, 9, "STOP")]


def test_no_groups_says_so() -> None:
    assert "no consumer group" in format_report([])
