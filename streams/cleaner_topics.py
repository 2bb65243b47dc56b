"""The cleaner app's internal topic and its record: a hop between its two agents, not a service contract.

`clean` sends each cleaned batch, with its pages' SimHashes, to `mark_near_duplicates` (streams.cleaner)
on this one-partition topic, so that one near-duplicate table sees every page whatever raw partition it
came from. No other service reads or writes it; what services exchange is in streams.topics and
streams.records.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from streams.records import PageCleaned, Record
from streams.topics import DAY_MS, Topic

__all__ = ["FingerprintedPage", "PagesFingerprinted", "fingerprinted_topic"]


class FingerprintedPage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    page: PageCleaned
    simhash: int = Field(ge=0, lt=2**64)


class PagesFingerprinted(Record):
    """A batch of clean pages with their texts' SimHash, before `near_duplicate_of` is known.
    One record per cleaned batch: the hop costs per record, not per page."""

    pages: list[FingerprintedPage] = Field(min_length=1)


def fingerprinted_topic(cleaner_app_id: str) -> Topic:
    """Named after the app, as faust names a table's changelog. One partition, so that one
    near-duplicate table sees every page."""
    return Topic(
        f"{cleaner_app_id}-fingerprinted", PagesFingerprinted, key="event_id", partitions=1, retention_ms=DAY_MS
    )
