"""The cleaner app's internal topic and its record: a hop between its two agents, not a service contract.

`clean` sends each cleaned batch, with its pages' SimHashes, to `mark_near_duplicates` (streams.cleaner)
on partition 0 of this topic; a partition is a near-duplicate shard (streams.near_duplicates), and the
batch goes from each shard to the next, gathering each page's nearest original, until the last shard
publishes it. Pages found near an original after some shards filed them are sent back to those shards
as retractions. No other service reads or writes it; what services exchange is in streams.topics and
streams.records.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from streams.records import PageCleaned, Record
from streams.topics import DAY_MS, Topic

__all__ = ["FingerprintedPage", "PagesFingerprinted", "RetractedOriginal", "fingerprinted_topic"]


class FingerprintedPage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    page: PageCleaned
    simhash: int = Field(ge=0, lt=2**64)
    # What the shards visited so far found: the nearest original, and the shards that filed this page.
    nearest_url: str | None = None
    nearest_distance: int | None = Field(None, ge=0, le=64)
    filed_on: list[int] = Field(default_factory=list)


class RetractedOriginal(BaseModel):
    """A page a shard filed as an original before a later shard found it near one: to be unfiled there."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str
    simhash: int = Field(ge=0, lt=2**64)


class PagesFingerprinted(Record):
    """A batch of clean pages with their texts' SimHash, before `near_duplicate_of` is known, or the
    retractions for one shard. One record per cleaned batch: the hop costs per record, not per page."""

    pages: list[FingerprintedPage] = Field(default_factory=list)
    retracted: list[RetractedOriginal] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self) -> PagesFingerprinted:
        if not self.pages and not self.retracted:
            raise ValueError("a PagesFingerprinted carries pages or retractions")
        return self


def fingerprinted_topic(cleaner_app_id: str, shards: int) -> Topic:
    """Named after the app, as faust names a table's changelog. One partition per near-duplicate shard."""
    return Topic(
        f"{cleaner_app_id}-fingerprinted", PagesFingerprinted, key="event_id", partitions=shards, retention_ms=DAY_MS
    )
