"""What an incremental run trains on (pure): the records new since the version it warm-starts
from, plus a bounded, seeded replay sample of the older ones (so the model does not forget them).

A version's manifest keeps the offsets it was trained up to (partition -> next offset); a record
at or past them is new. Records are first reduced to the ones in force: the latest page per URL,
the latest event per label_id (a deleted label is gone). The first run (no offsets) finds every
record new and trains on all of it. The replay sample is drawn with a seed made of the run's
seed and the offsets, so one run is reproducible and successive runs replay different records.
New records can be capped too (a big crawl): a seeded sample of them is trained on, and the
others, now behind the offsets, are in the replay pool of later runs.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from streams.records import LabelRecorded, PageCleaned

__all__ = ["At", "Selection", "is_new", "latest_labels", "latest_pages", "replay_seed", "select"]

R = TypeVar("R")


@dataclass(frozen=True)
class At(Generic[R]):
    """A record and where it sits on its topic."""

    record: R
    partition: int
    offset: int


@dataclass(frozen=True)
class Selection(Generic[R]):
    new: list[R]
    replayed: list[R]
    older: int  # older records in force, of which `replayed` is a sample

    @property
    def records(self) -> list[R]:
        return self.new + self.replayed


def latest_pages(pages: Iterable[At[PageCleaned]]) -> list[At[PageCleaned]]:
    """The last page per URL (a recrawl replaces the page), sorted by URL."""
    by_url = {item.record.url: item for item in pages}
    return [by_url[url] for url in sorted(by_url)]


def latest_labels(events: Iterable[At[LabelRecorded]]) -> list[At[LabelRecorded]]:
    """The last event per label_id in log order, deleted labels dropped, sorted by label_id.

    Events of one label_id share a key, hence a partition: log order is their order.
    """
    latest: dict[str, At[LabelRecorded]] = {}
    for item in events:
        if item.record.action == "deleted":
            latest.pop(item.record.label_id, None)
        else:
            latest[item.record.label_id] = item
    return [latest[label_id] for label_id in sorted(latest)]


def is_new(item: At[object], trained_offsets: dict[str, int]) -> bool:
    return item.offset >= trained_offsets.get(str(item.partition), 0)


def replay_seed(seed: int, trained_offsets: dict[str, int]) -> str:
    return f"{seed}:" + ",".join(f"{partition}={offset}" for partition, offset in sorted(trained_offsets.items()))


def select(
    items: Sequence[At[R]], trained_offsets: dict[str, int], replay: int, seed: str, max_new: int | None = None
) -> Selection[R]:
    """The new records (at most `max_new`), and up to `replay` older ones, sampled with `seed`; in their given order."""
    rng = random.Random(seed)
    new = [index for index, item in enumerate(items) if is_new(item, trained_offsets)]
    older = [index for index, item in enumerate(items) if not is_new(item, trained_offsets)]
    if max_new is not None and len(new) > max_new:
        new = sorted(rng.sample(new, max_new))
    replayed = sorted(rng.sample(older, min(replay, len(older))))
    return Selection([items[i].record for i in new], [items[i].record for i in replayed], len(older))
