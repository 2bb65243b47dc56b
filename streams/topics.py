"""The topic registry: every topic ctrlgpt's services exchange records on, defined once, with its record type.

Services import the `Topic` objects below (`topics.PAGES_CLEAN`), never a topic
name as a string. `encode`/`decode` are the only way records cross the wire.
A service's internal topics are its own (the cleaner's: streams.cleaner_topics; the label bridge's
state: consumers.doccano_labels.state_topic).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import get_args

from pydantic import ValidationError

from streams.records import (
    CrawlRequested,
    DeadLetter,
    LabelRecorded,
    ModelLoadFailed,
    ModelPromoted,
    PageCleaned,
    PageFetched,
    Record,
    Stage,
    TrainingRequested,
    TrainingRunProgressed,
)

__all__ = [
    "ALL",
    "DOCCANO_CHANGE_TABLES",
    "STAGES",
    "ContractError",
    "Topic",
    "by_name",
    "dead_letter_topic",
    "doccano_change_topic",
]

DAY_MS = 24 * 3600 * 1000


class ContractError(ValueError):
    """Bytes that are not a valid record of the topic they arrived on."""


@dataclass(frozen=True)
class Topic:
    name: str
    record: type[Record]
    key: str = field(metadata={"help": "Which record field is the message key."})
    partitions: int | None = None  # None: the configured default for data topics
    retention_ms: int = 7 * DAY_MS
    cleanup_policy: str = "delete"

    def encode(self, record: Record) -> bytes:
        if not isinstance(record, self.record):
            raise TypeError(f"{self.name} carries {self.record.__name__}, not {type(record).__name__}")
        return record.model_dump_json().encode()

    def key_of(self, record: Record) -> bytes:
        value = getattr(record, self.key)
        return str(record.event_id if value is None else value).encode()

    def decode(self, payload: bytes | None) -> Record:
        if payload is None:
            raise ContractError(f"{self.name}: empty message (tombstone) where a {self.record.__name__} was expected")
        try:
            # Parsed and validated in one pass by pydantic-core (about twice as fast as json.loads first).
            return self.record.model_validate_json(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            if first["type"] == "json_invalid":
                raise ContractError(f"{self.name}: not JSON: {first['msg']}") from exc
            errors = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()[:5])
            raise ContractError(f"{self.name}: invalid {self.record.__name__}: {errors}") from exc

    def config(self) -> dict[str, str]:
        return {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms)}


CRAWL_REQUESTS = Topic("ctrlgpt.crawl.requests", CrawlRequested, key="url")
PAGES_RAW = Topic("ctrlgpt.pages.raw", PageFetched, key="url", retention_ms=3 * DAY_MS)
PAGES_CLEAN = Topic("ctrlgpt.pages.clean", PageCleaned, key="url", retention_ms=30 * DAY_MS)
LABELS = Topic("ctrlgpt.labels", LabelRecorded, key="label_id", retention_ms=-1)
TRAINING_COMMANDS = Topic("ctrlgpt.training.commands", TrainingRequested, key="command", partitions=1)
TRAINING_RUNS = Topic("ctrlgpt.training.runs", TrainingRunProgressed, key="run_id", partitions=1)
# Compacted: an API replica that starts later reads the last record per model name
# and so learns the current version without any other store.
MODEL_UPDATES = Topic(
    "ctrlgpt.models.updates", ModelPromoted, key="model_name", partitions=1, retention_ms=-1, cleanup_policy="compact"
)
MODEL_LOAD_FAILURES = Topic(
    "ctrlgpt.models.load-failures", ModelLoadFailed, key="version", partitions=1, retention_ms=30 * DAY_MS
)

STAGES: tuple[Stage, ...] = get_args(Stage)


def dead_letter_topic(stage: Stage) -> Topic:
    # The Literal catches a misspelt stage in a type checker; this, at run time.
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    return Topic(f"ctrlgpt.dlq.{stage}", DeadLetter, key="key", partitions=1, retention_ms=30 * DAY_MS)


# doccano's tables whose changes Debezium streams (deploy.connect) and the label bridge reads:
# annotations (classes and texts), an example's check mark, the examples themselves.
DOCCANO_CHANGE_TABLES = ("labels_category", "labels_textlabel", "examples_examplestate", "examples_example")


def doccano_change_topic(prefix: str, table: str) -> Topic:
    """Debezium's change topic of one of doccano's tables (`cdc_topic_prefix`).

    Written by Kafka Connect in Debezium's JSON envelope (before, after, op), not as a
    ctrlgpt record: the label bridge reads it with `consumers.doccano_changes`, never `decode`.
    One partition: Debezium keys by primary key, and the bridge wants no more than one reader.
    """
    if table not in DOCCANO_CHANGE_TABLES:
        raise ValueError(f"not a table the bridge follows: {table!r}")
    return Topic(f"{prefix}.public.{table}", Record, key="event_id", partitions=1, retention_ms=7 * DAY_MS)


ALL: tuple[Topic, ...] = (
    CRAWL_REQUESTS,
    PAGES_RAW,
    PAGES_CLEAN,
    LABELS,
    TRAINING_COMMANDS,
    TRAINING_RUNS,
    MODEL_UPDATES,
    MODEL_LOAD_FAILURES,
    *(dead_letter_topic(stage) for stage in STAGES),
)


def by_name(name: str) -> Topic:
    for topic in ALL:
        if topic.name == name:
            return topic
    raise KeyError(name)
