"""What a stage has read from Kafka but not yet written, and so how far it may commit.

Pure bookkeeping for `streams.bus.consume`: through an outage the stage holds the records
it could not write (its partitions paused), keeps reading nothing else, and commits each
partition only up to its first record not yet written. A partition taken away by a
rebalance is forgotten, records held included: they were not committed, so whoever owns
the partition next reads them again (neither lost nor written twice by this worker).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar

__all__ = ["Positioned", "ReadAhead"]

Partition = tuple[str, int]


class Positioned(Protocol):
    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


T = TypeVar("T", bound=Positioned)


class ReadAhead(Generic[T]):
    def __init__(self) -> None:
        self.unwritten: list[T] = []
        self._next_to_read: dict[Partition, int] = {}
        self._committed: dict[Partition, int] = {}

    def read(self, topic: str, partition: int, offset: int) -> None:
        """Any message read, written or not (a dead-lettered one counts as done once its letter is out)."""
        self._next_to_read[(topic, partition)] = offset + 1

    def hold(self, record: T) -> None:
        self.unwritten.append(record)

    def still_unwritten(self, records: list[T]) -> None:
        """After a write: what is left of `unwritten` (a suffix of it, in the order read)."""
        self.unwritten = records

    def to_commit(self) -> dict[Partition, int]:
        """Per partition, the offset to commit (its first unwritten record's, else the next to read), if it moved."""
        offsets = dict(self._next_to_read)
        for record in reversed(self.unwritten):
            offsets[(record.topic, record.partition)] = record.offset
        return {partition: offset for partition, offset in offsets.items() if self._committed.get(partition) != offset}

    def committed(self, offsets: dict[Partition, int]) -> None:
        self._committed.update(offsets)

    def forget(self, partitions: Iterable[Partition]) -> int:
        """Drop everything about partitions this worker no longer owns; returns how many held records were dropped."""
        gone = set(partitions)
        for partition in gone:
            self._next_to_read.pop(partition, None)
            self._committed.pop(partition, None)
        kept = [record for record in self.unwritten if (record.topic, record.partition) not in gone]
        dropped = len(self.unwritten) - len(kept)
        self.unwritten = kept
        return dropped
