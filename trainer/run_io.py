"""A run's Kafka edges: what it reads (snapshots of the clean pages and of the labels, then what is new since
the current version plus a seeded replay sample of older records: `trainer.replay`) and what it announces
(its progress on `topics.TRAINING_RUNS`, a promotion on `topics.MODEL_UPDATES`).

    inputs = run_io.read_inputs(settings, config, stop)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TypeVar

from confluent_kafka import Producer

from ctrlgpt.settings import Settings
from models import manifest
from models.announcements import published
from streams import bus, topics
from streams.records import LabelRecorded, ModelPromoted, PageCleaned
from streams.snapshot import TopicSnapshot, read_snapshot_when_kafka_is_back
from trainer import replay
from trainer.progress import ProgressReporter
from trainer.run_config import RunConfig
from trainer.steering import Offsets, RunOutcome, registry_of

__all__ = ["Chosen", "RunInputs", "announce_promotion", "choose", "progress_reporter", "read_inputs", "trained_offsets"]

R = TypeVar("R")


@dataclass(frozen=True)
class RunInputs:
    pages: list[PageCleaned]  # in log order
    labels: list[LabelRecorded]  # in log order
    offsets: Offsets  # the topics' end offsets when read: what the versions of this run are trained up to
    counts: dict[str, int]  # read, skipped (undecodable), new and replayed, recorded in the versions' metrics


def progress_reporter(run_id: str, producer: Producer) -> ProgressReporter:
    return ProgressReporter(run_id, publish=lambda event: bus.publish(producer, topics.TRAINING_RUNS, event))


def read_inputs(settings: Settings, config: RunConfig, stop: threading.Event | None) -> RunInputs:
    """The records this run trains on; waits for Kafka while it is away (until `stop`)."""
    pages = read_snapshot_when_kafka_is_back(settings, topics.PAGES_CLEAN, stop)
    labels = read_snapshot_when_kafka_is_back(settings, topics.LABELS, stop)
    chosen = choose(config, _positioned(pages, PageCleaned), _positioned(labels, LabelRecorded))
    return RunInputs(
        pages=chosen.pages,
        labels=chosen.labels,
        offsets=Offsets(labels=_as_offsets(labels.end_offsets), pages=_as_offsets(pages.end_offsets)),
        counts={
            "pages_read": len(pages.records),
            "pages_skipped": pages.skipped,
            "label_events_read": len(labels.records),
            "label_events_skipped": labels.skipped,
        }
        | chosen.counts,
    )


@dataclass(frozen=True)
class Chosen:
    pages: list[PageCleaned]  # new, then replayed
    labels: list[LabelRecorded]  # new, then replayed
    counts: dict[str, int]  # new and replayed of each


def choose(config: RunConfig, pages: list[replay.At[PageCleaned]], labels: list[replay.At[LabelRecorded]]) -> Chosen:
    """What is new since the anchor's current version, plus the replay sample of older records, of the
    positioned records read (in log order); `bench/run_time.py` calls it as the trainer does."""
    label_trained, page_trained = trained_offsets(config)
    chosen_pages = replay.select(
        replay.latest_pages(pages),
        page_trained,
        config.replay.replay_pages,
        replay.replay_seed(config.seed, page_trained),
        max_new=config.replay.max_new_pages,
    )
    chosen_labels = replay.select(
        replay.latest_labels(labels),
        label_trained,
        config.replay.replay_labels,
        replay.replay_seed(config.seed, label_trained),
    )
    return Chosen(
        pages=chosen_pages.records,
        labels=chosen_labels.records,
        counts={
            "pages_new": len(chosen_pages.new),
            "pages_replayed": len(chosen_pages.replayed),
            "labels_new": len(chosen_labels.new),
            "labels_replayed": len(chosen_labels.replayed),
        },
    )


def trained_offsets(config: RunConfig) -> tuple[dict[str, int], dict[str, int]]:
    """(label, page) offsets the anchor's current version was trained up to; empty before the first version."""
    current_dir = registry_of(config, config.anchor).current_dir()
    if current_dir is None:
        return {}, {}
    current = manifest.read_manifest(current_dir)
    return current.label_offsets, current.page_offsets


def announce_promotion(settings: Settings, producer: Producer, outcome: RunOutcome) -> None:
    """A promoted outcome published to the model store, then on `topics.MODEL_UPDATES` for the API to load;
    any other outcome is neither published nor announced."""
    if outcome.status != "promoted":
        return
    # Published whole first: a replica that reads the announcement finds every file in the store.
    promotion: ModelPromoted = published(settings, outcome.path, reason=outcome.reason)
    # The version is registered already: its announcement waits for Kafka however long it is away,
    # or the API would never learn of it (and the next run would start from a version nobody serves).
    bus.deliver_all(producer, [bus.Outgoing.of(topics.MODEL_UPDATES, promotion)])


def _positioned(snapshot: TopicSnapshot, kind: type[R]) -> list[replay.At[R]]:
    return [
        replay.At(record, partition, offset)
        for record, partition, offset in snapshot.positioned()
        if isinstance(record, kind)
    ]


def _as_offsets(end_offsets: dict[int, int]) -> dict[str, int]:
    return {str(partition): offset for partition, offset in end_offsets.items()}
