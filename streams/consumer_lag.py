"""Consumer lag status the way Burrow evaluates it: rules over a sliding window, no thresholds.

Pure: no Kafka here. `streams.offsets` reads `OffsetsSnapshot`s from the broker;
`LagTracker` keeps a window of samples per group, topic and partition and
evaluates them with Burrow's rules, in Burrow's order:

1. OK     the lag is zero now, or was zero at any sample of the window;
2. REWIND the committed offset went backwards (an error: offsets reset or lost);
3. STOP   no live member of the group owns the partition (nobody consumes) and its
          committed offset has not moved across the whole window (two samples or more)
          or for longer than `stop_after_s`;
   STALL  a live member owns it, but the committed offset has not moved for longer than
          `stop_after_s` (it is there and makes no progress);
4. WARN   the lag did not decrease between any two samples of the window;
5. OK     otherwise.

Burrow reads commits from `__consumer_offsets`, with their times, and so tells STALL
(commits keep coming, same offset) from STOP (commits stopped). Kafka's offset API
gives no commit times, so here ownership by a live member stands in for "commits keep
coming". A partition nobody owns cannot move, so a window that shows it still with lag
is STOP at once: a one-shot `ctrlgpt lag` of a few seconds reports a dead worker without
watching for `stop_after_s`. A group's status is its worst partition's; `burrow_status`
folds STOP, STALL and REWIND into Burrow's group-level ERR.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum

__all__ = [
    "GroupLag",
    "GroupOffsets",
    "LagTracker",
    "OffsetSample",
    "OffsetsSnapshot",
    "PartitionLag",
    "Status",
    "TopicPartition",
    "evaluate_group",
    "evaluate_partition",
]

TopicPartition = tuple[str, int]


class Status(str, Enum):
    """Burrow's partition statuses, in Burrow's order of severity (its numeric codes)."""

    OK = "OK"
    WARN = "WARN"
    STOP = "STOP"
    STALL = "STALL"
    REWIND = "REWIND"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Status.OK: 1, Status.WARN: 2, Status.STOP: 4, Status.STALL: 5, Status.REWIND: 6}
_ERRORS = {Status.STOP, Status.STALL, Status.REWIND}


@dataclass(frozen=True)
class OffsetSample:
    """One observation of a partition: when, the group's committed offset, the log end offset."""

    at: float
    committed: int
    end: int

    @property
    def lag(self) -> int:
        # The two offsets are read one after the other: a commit in between can pass the end read first.
        return max(self.end - self.committed, 0)


@dataclass(frozen=True)
class GroupOffsets:
    """A group as the broker describes it: state, members, committed offsets, partitions its members own."""

    group: str
    committed: dict[TopicPartition, int]
    state: str = "UNKNOWN"
    members: int = 0
    owned: frozenset[TopicPartition] = frozenset()


@dataclass(frozen=True)
class OffsetsSnapshot:
    """End offsets of topics and committed offsets of groups, read at about `taken_at` (unix seconds)."""

    taken_at: float
    end_offsets: dict[TopicPartition, int]
    groups: tuple[GroupOffsets, ...] = ()


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    status: Status
    committed: int
    end: int
    lag: int
    samples: int
    consume_rate: float | None  # records per second committed over the window
    produce_rate: float | None  # records per second appended over the window
    time_to_drain_s: float | None  # None: not draining at the window's rates
    owned: bool
    reason: str


@dataclass(frozen=True)
class GroupLag:
    group: str
    status: Status
    state: str
    members: int
    partitions: tuple[PartitionLag, ...]

    @property
    def burrow_status(self) -> str:
        """Burrow's group status: OK, WARN, or ERR when a partition is STOP, STALL or REWIND."""
        return "ERR" if self.status in _ERRORS else self.status.value

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def time_to_drain_s(self) -> float | None:
        """The slowest partition's; None if a partition with lag is not draining."""
        times = [p.time_to_drain_s for p in self.partitions]
        if any(t is None for t in times):
            return None
        return max(times, default=0.0)

    def as_dict(self) -> dict:
        """JSON-ready: the group's figures and each partition's."""
        return {
            "group": self.group,
            "status": self.status.value,
            "burrow_status": self.burrow_status,
            "state": self.state,
            "members": self.members,
            "total_lag": self.total_lag,
            "time_to_drain_s": self.time_to_drain_s,
            "partitions": [{**asdict(p), "status": p.status.value} for p in self.partitions],
        }


def evaluate_partition(
    window: Sequence[OffsetSample],
    *,
    now: float,
    unchanged_since: float,
    owned: bool,
    stop_after_s: float,
    topic: str = "",
    partition: int = 0,
) -> PartitionLag:
    """Burrow's rules over `window` (oldest first); `unchanged_since`: when its last committed offset was first seen."""
    window = list(window)
    if not window:
        raise ValueError("a partition is evaluated over at least one sample")
    last = window[-1]
    consume_rate, produce_rate, drain = _rates(window)
    status, reason = _status(window, now=now, unchanged_since=unchanged_since, owned=owned, stop_after_s=stop_after_s)
    return PartitionLag(
        topic=topic,
        partition=partition,
        status=status,
        committed=last.committed,
        end=last.end,
        lag=last.lag,
        samples=len(window),
        consume_rate=consume_rate,
        produce_rate=produce_rate,
        time_to_drain_s=drain,
        owned=owned,
        reason=reason,
    )


def _status(
    window: Sequence[OffsetSample], *, now: float, unchanged_since: float, owned: bool, stop_after_s: float
) -> tuple[Status, str]:
    if window[-1].lag == 0 or any(s.lag == 0 for s in window):
        return Status.OK, "lag was zero in the window"
    pairs = list(zip(window, window[1:]))
    if any(b.committed < a.committed for a, b in pairs):
        return Status.REWIND, "the committed offset went backwards"
    idle = now - unchanged_since
    unmoved_across_window = len(window) > 1 and all(s.committed == window[0].committed for s in window)
    if not owned and (idle > stop_after_s or unmoved_across_window):
        return Status.STOP, f"no live member owns it and the committed offset has not moved for {idle:.0f}s"
    if owned and idle > stop_after_s:
        return Status.STALL, f"a live member owns it, but the committed offset has not moved for {idle:.0f}s"
    if pairs and all(b.lag >= a.lag for a, b in pairs):
        return Status.WARN, "the lag did not decrease across the window"
    return Status.OK, "the lag is decreasing"


def _rates(window: Sequence[OffsetSample]) -> tuple[float | None, float | None, float | None]:
    """Consumption and production rates over the window, and the time to drain the lag at their difference."""
    first, last = window[0], window[-1]
    span = last.at - first.at
    consume = (last.committed - first.committed) / span if span > 0 else None
    produce = (last.end - first.end) / span if span > 0 else None
    if last.lag == 0:
        drain: float | None = 0.0
    elif consume is not None and produce is not None and consume > produce:
        drain = last.lag / (consume - produce)
    else:
        drain = None
    return consume, produce, drain


def evaluate_group(
    group: str, partitions: Iterable[PartitionLag], *, state: str = "UNKNOWN", members: int = 0
) -> GroupLag:
    """The group's status is its worst partition's (OK for a group with no partitions)."""
    ordered = tuple(sorted(partitions, key=lambda p: (p.topic, p.partition)))
    worst = max((p.status for p in ordered), key=lambda s: s.severity, default=Status.OK)
    return GroupLag(group=group, status=worst, state=state, members=members, partitions=ordered)


@dataclass
class _PartitionWindow:
    samples: deque[OffsetSample]
    unchanged_since: float


@dataclass
class LagTracker:
    """Windows of samples per (group, topic, partition), fed one `OffsetsSnapshot` at a time.

    Also keeps a bounded history of each group's total lag and status for charts.
    Not thread-safe: the caller serialises `add` and the reads.
    """

    window: int = 10
    stop_after_s: float = 120.0
    history: int = 720
    _windows: dict[tuple[str, str, int], _PartitionWindow] = field(init=False, default_factory=dict)
    _groups: dict[str, GroupOffsets] = field(init=False, default_factory=dict)
    _history: deque[dict] = field(init=False)
    _latest_at: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError("the window holds at least one sample")
        self._history = deque(maxlen=self.history)

    def add(self, snapshot: OffsetsSnapshot) -> list[GroupLag]:
        """Record one snapshot; returns the groups' evaluation as of it."""
        seen: set[tuple[str, str, int]] = set()
        for group in snapshot.groups:
            for (topic, partition), committed in group.committed.items():
                end = snapshot.end_offsets.get((topic, partition))
                if end is None:
                    continue  # the topic is gone, or its end offset could not be read this time
                key = (group.group, topic, partition)
                seen.add(key)
                sample = OffsetSample(snapshot.taken_at, committed, end)
                current = self._windows.get(key)
                if current is None:
                    self._windows[key] = _PartitionWindow(deque([sample], maxlen=self.window), snapshot.taken_at)
                    continue
                if current.samples[-1].committed != committed:
                    current.unchanged_since = snapshot.taken_at
                current.samples.append(sample)
        for key in set(self._windows) - seen:
            del self._windows[key]  # the group or its offsets are gone: a later return starts a fresh window
        self._groups = {g.group: g for g in snapshot.groups}
        self._latest_at = snapshot.taken_at
        evaluation = self.evaluate()
        self._history.append(
            {
                "at": snapshot.taken_at,
                "groups": {g.group: {"lag": g.total_lag, "status": g.status.value} for g in evaluation},
            }
        )
        return evaluation

    def evaluate(self, now: float | None = None) -> list[GroupLag]:
        """Every group of the latest snapshot, evaluated at `now` (default: that snapshot's time)."""
        if self._latest_at is None:
            return []
        at = self._latest_at if now is None else now
        by_group: dict[str, list[PartitionLag]] = {name: [] for name in self._groups}
        for (group, topic, partition), window in self._windows.items():
            owned = (topic, partition) in self._groups[group].owned
            by_group[group].append(
                evaluate_partition(
                    window.samples,
                    now=at,
                    unchanged_since=window.unchanged_since,
                    owned=owned,
                    stop_after_s=self.stop_after_s,
                    topic=topic,
                    partition=partition,
                )
            )
        return [
            evaluate_group(name, parts, state=self._groups[name].state, members=self._groups[name].members)
            for name, parts in sorted(by_group.items())
        ]

    def history_points(self) -> list[dict]:
        """Oldest first: {"at": unix seconds, "groups": {group: {"lag": n, "status": s}}}."""
        return list(self._history)
