"""Which offsets of each partition a worker has handled, and where the stream skipped some.

faust-streaming can drop messages it had fetched while a rebalance or a table recovery runs
(faust-streaming #596): the stream goes on with later offsets, and faust's commit then either
stops before the gap until the worker's next start or, when the gap is one message at the head,
commits past it. The cleaner feeds every event's offset here and seeks its partition back to the
first offset it never saw; what follows the gap is handled again (at least once: the sinks are
idempotent). A partition whose skipped messages were the last ones shows no later event: the watch
also names partitions that have been idle a while, so that the cleaner can compare their committed
offset with the end of the partition and seek back when messages wait there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["OffsetWatch", "PartitionProgress", "Rewind"]

Partition = TypeVar("Partition")


@dataclass(frozen=True)
class Rewind(Generic[Partition]):
    """Seek `partition` back to `offset`: the offsets from there to `seen` never reached the stream."""

    partition: Partition
    offset: int
    seen: int
    attempt: int


@dataclass
class PartitionProgress:
    next_needed: int
    handled_above: set[int] = field(default_factory=set)
    rewound_at: float | None = None
    attempts: int = 0

    def handle(self, offset: int, now: float, retry_after_s: float) -> int | None:
        """Record `offset` as handled; the offset to seek back to when earlier ones were skipped."""
        if offset < self.next_needed:
            return None  # handled before: a re-delivery after a rewind
        if offset > self.next_needed:
            self.handled_above.add(offset)
            if self.rewound_at is not None and now - self.rewound_at < retry_after_s:
                return None  # the rewind's messages are on their way; events fetched before it still arrive
            self.rewound_at = now
            self.attempts += 1
            return self.next_needed
        self._advance_past(offset)
        return None

    def give_up(self) -> tuple[int, int]:
        """Accept the gap (its messages are gone, e.g. deleted by retention): its range, end excluded."""
        first_seen = min(self.handled_above)
        gap = (self.next_needed, first_seen)
        self.handled_above.remove(first_seen)
        self._advance_past(first_seen)
        return gap

    def _advance_past(self, offset: int) -> None:
        self.next_needed = offset + 1
        while self.next_needed in self.handled_above:
            self.handled_above.remove(self.next_needed)
            self.next_needed += 1
        self.rewound_at, self.attempts = None, 0


class OffsetWatch(Generic[Partition]):
    """A `PartitionProgress` per partition, from its committed offset when the partition arrives."""

    def __init__(self, retry_after_s: float, max_attempts: int) -> None:
        self.retry_after_s = retry_after_s
        self.max_attempts = max_attempts
        self._partitions: dict[Partition, PartitionProgress] = {}
        self._active_at: dict[Partition, float] = {}

    def assigned(self, partitions: set[Partition], now: float) -> None:
        for partition in partitions:
            self._active_at[partition] = now

    def forget(self, partitions: set[Partition]) -> None:
        """Partitions revoked from this worker: another may handle them before they come back."""
        for partition in partitions:
            self._partitions.pop(partition, None)
            self._active_at.pop(partition, None)

    def idle(self, partitions: set[Partition], now: float) -> list[Partition]:
        """Those of `partitions` with no event, assignment or rewind for `retry_after_s`."""
        return [
            partition for partition in partitions if now - self._active_at.get(partition, now) >= self.retry_after_s
        ]

    def knows(self, partition: Partition) -> bool:
        """Whether the partition's progress is tracked (from its first event since it was assigned)."""
        return partition in self._partitions

    def rewound(self, partition: Partition, now: float) -> None:
        self._active_at[partition] = now

    def handle(self, partition: Partition, offset: int, committed: int | None, now: float) -> Rewind[Partition] | None:
        """Record an event; a Rewind when messages before it were skipped.

        `committed` is the partition's committed offset (the next to read) as the worker knows it, or
        where it starts reading when the group has none (the earliest offset, for `auto.offset.reset`
        earliest); None when it does not know (then tracking starts at the first event seen, and messages
        skipped before it go unnoticed).
        """
        self._active_at[partition] = now
        progress = self._partitions.get(partition)
        if progress is None:
            progress = self._partitions[partition] = PartitionProgress(offset if committed is None else committed)
        target = progress.handle(offset, now, self.retry_after_s)
        if target is None:
            return None
        return Rewind(partition, target, offset, progress.attempts)

    def give_up(self, partition: Partition) -> tuple[int, int]:
        return self._partitions[partition].give_up()
