"""What an incremental run trains on: new records since the current version, plus a bounded, seeded replay."""

from __future__ import annotations

from datetime import UTC, datetime

from streams.records import LabelRecorded, PageCleaned, SentimentLabel
from trainer import replay
from trainer.replay import At


def page(name: str, text: str = "Some body text.") -> PageCleaned:
    return PageCleaned(
        url=f"http://example.test/{name}",
        domain="example.test",
        title="A title",
        summary="",
        text=text,
        language="en",
        content_sha256="0" * 64,
        fetched_at=datetime(2025, 1, 1, tzinfo=UTC),
        crawl_id="c",
    )


def label(label_id: str, value: str = "positive", action: str = "created") -> LabelRecorded:
    return LabelRecorded(
        label_id=label_id,
        source="doccano",
        annotator="a",
        action=action,
        label=SentimentLabel(text=f"text of {label_id}", sentiment=value),
    )


def test_a_record_at_or_past_the_trained_offset_of_its_partition_is_new():
    trained = {"0": 5, "1": 2}
    assert replay.is_new(At("x", 0, 5), trained) and not replay.is_new(At("x", 0, 4), trained)
    assert replay.is_new(At("x", 1, 2), trained) and replay.is_new(At("x", 2, 0), trained)


def test_the_first_run_finds_everything_new():
    items = [At(page(f"u{i}"), 0, i) for i in range(5)]
    chosen = replay.select(items, {}, replay=2, seed="0:")
    assert chosen.new == [item.record for item in items] and chosen.replayed == [] and chosen.older == 0


def test_replay_is_bounded_seeded_and_drawn_from_older_records_only():
    items = [At(page(f"u{i:02d}"), i % 2, i // 2) for i in range(40)]
    trained = {"0": 15, "1": 15}
    chosen = replay.select(items, trained, replay=6, seed=replay.replay_seed(3, trained))
    assert [p.url[-3:] for p in chosen.new] == [f"u{i:02d}" for i in range(30, 40)]
    assert len(chosen.replayed) == 6 and chosen.older == 30
    assert {p.url[-3:] for p in chosen.replayed} <= {f"u{i:02d}" for i in range(30)}
    again = replay.select(items, trained, replay=6, seed=replay.replay_seed(3, trained))
    other = replay.select(items, trained, replay=6, seed=replay.replay_seed(4, trained))
    assert again == chosen and other.replayed != chosen.replayed
    assert chosen.records == chosen.new + chosen.replayed


def test_new_records_beyond_the_cap_are_a_seeded_sample():
    items = [At(page(f"u{i:02d}"), 0, i) for i in range(30)]
    chosen = replay.select(items, {"0": 10}, replay=3, seed="s", max_new=5)
    again = replay.select(items, {"0": 10}, replay=3, seed="s", max_new=5)
    assert len(chosen.new) == 5 and len(chosen.replayed) == 3 and chosen == again
    assert {p.url[-3:] for p in chosen.new} <= {f"u{i:02d}" for i in range(10, 30)}
    assert [p.url for p in chosen.new] == sorted(p.url for p in chosen.new)


def test_replay_takes_every_older_record_when_fewer_than_the_bound():
    items = [At(page(f"u{i}"), 0, i) for i in range(4)]
    chosen = replay.select(items, {"0": 3}, replay=10, seed="s")
    assert [p.url[-2:] for p in chosen.new] == ["u3"] and [p.url[-2:] for p in chosen.replayed] == ["u0", "u1", "u2"]


def test_a_recrawled_page_is_new_at_its_latest_position():
    items = [At(page("a", "old"), 0, 0), At(page("b"), 0, 1), At(page("a", "recrawled"), 0, 7)]
    latest = replay.latest_pages(items)
    assert [(item.record.url[-1], item.record.text, item.offset) for item in latest] == [
        ("a", "recrawled", 7),
        ("b", "Some body text.", 1),
    ]
    chosen = replay.select(latest, {"0": 5}, replay=0, seed="s")
    assert [p.text for p in chosen.new] == ["recrawled"] and chosen.older == 1


def test_labels_in_force_are_the_latest_event_per_id_and_an_update_makes_a_label_new():
    items = [
        At(label("l1"), 0, 0),
        At(label("l2"), 1, 0),
        At(label("l1", "negative", action="updated"), 0, 3),
        At(label("l2", action="deleted"), 1, 4),
        At(label("l3"), 2, 0),
    ]
    latest = replay.latest_labels(items)
    assert [(item.record.label_id, item.record.label.sentiment) for item in latest] == [
        ("l1", "negative"),
        ("l3", "positive"),
    ]
    chosen = replay.select(latest, {"0": 2, "1": 5, "2": 1}, replay=0, seed="s")
    assert [event.label_id for event in chosen.new] == ["l1"] and chosen.older == 1
