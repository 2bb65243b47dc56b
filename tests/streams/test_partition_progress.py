"""The offset watch of the cleaner (streams.partition_progress): gaps found, rewinds asked once per wait."""

from streams.partition_progress import OffsetWatch, PartitionProgress


def feed(watch: OffsetWatch, offsets: list[int], *, committed: int | None = 0, now: float = 0.0, tp: str = "p0"):
    return [rewind for offset in offsets if (rewind := watch.handle(tp, offset, committed, now)) is not None]


def test_consecutive_offsets_from_the_committed_one_need_no_rewind():
    watch = OffsetWatch(retry_after_s=10, max_attempts=3)
    assert feed(watch, list(range(5, 40)), committed=5) == []


def test_a_gap_in_the_middle_asks_to_seek_back_to_its_first_offset():
    watch = OffsetWatch(retry_after_s=10, max_attempts=3)
    rewinds = feed(watch, [0, 1, 2, 6, 7])
    assert [(r.partition, r.offset, r.seen, r.attempt) for r in rewinds] == [("p0", 3, 6, 1)]


def test_one_skipped_message_at_the_head_is_found_too():
    # faust commits past a single missing head message; the watch starts from the committed offset.
    watch = OffsetWatch(retry_after_s=10, max_attempts=3)
    assert [r.offset for r in feed(watch, [11, 12], committed=10)] == [10]


def test_a_rewind_is_asked_again_only_after_the_retry_wait_and_not_once_the_gap_is_filled():
    watch = OffsetWatch(retry_after_s=10, max_attempts=3)
    assert [r.offset for r in feed(watch, [0, 4, 5], now=0.0)] == [1]
    assert feed(watch, [6, 7], now=5.0) == []  # fetched before the rewind: still arriving
    assert [r.attempt for r in feed(watch, [8], now=11.0)] == [2]
    assert feed(watch, [1, 2, 3, 4, 5, 6, 7, 8, 9], now=12.0) == []  # re-delivered: the gap is closed
    assert feed(watch, [10, 11], now=13.0) == []


def test_partitions_are_watched_apart_and_forgotten_when_revoked():
    watch = OffsetWatch(retry_after_s=10, max_attempts=3)
    assert feed(watch, [0, 1], tp="a") == [] and feed(watch, [0], tp="b") == []
    watch.forget({"a"})
    # Back after another worker handled it: tracking restarts from the new committed offset.
    assert feed(watch, [50, 51], committed=50, tp="a") == []


def test_unknown_committed_offset_starts_at_the_first_event():
    watch = OffsetWatch(retry_after_s=10, max_attempts=3)
    assert feed(watch, [7, 8, 9], committed=None) == []


def test_giving_up_accepts_the_gap_and_goes_on_from_the_offsets_seen():
    progress = PartitionProgress(next_needed=0)
    for offset in (0, 1, 5, 6):
        progress.handle(offset, 0.0, 10.0)
    assert progress.give_up() == (2, 5)
    assert progress.next_needed == 7 and not progress.handled_above


def test_partitions_with_no_event_for_the_wait_are_idle_until_an_event_or_a_rewind():
    watch = OffsetWatch(retry_after_s=10, max_attempts=3)
    watch.assigned({"a", "b"}, now=0.0)
    watch.handle("a", 0, 0, now=8.0)
    assert watch.idle({"a", "b"}, now=12.0) == ["b"]
    watch.rewound("b", now=12.0)
    assert watch.idle({"a", "b"}, now=19.0) == ["a"]
    watch.forget({"a"})
    assert watch.idle({"b"}, now=30.0) == ["b"]


def test_the_watch_says_which_partitions_it_tracks_until_they_are_revoked():
    # The cleaner asks Kafka where a partition with no committed offset begins only before its first event.
    watch = OffsetWatch(retry_after_s=10, max_attempts=3)
    assert not watch.knows("p0")
    assert [r.offset for r in feed(watch, [2, 3], committed=0)] == [0]
    assert watch.knows("p0") and not watch.knows("p1")
    watch.forget({"p0"})
    assert not watch.knows("p0")
