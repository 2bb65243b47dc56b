"""How far a stage may commit while it holds records it could not write, and what a rebalance takes away."""

from __future__ import annotations

from dataclasses import dataclass

from streams.read_ahead import ReadAhead


@dataclass(frozen=True)
class At:
    topic: str
    partition: int
    offset: int


def _read(ahead: ReadAhead[At], *records: At) -> None:
    for record in records:
        ahead.read(record.topic, record.partition, record.offset)
        ahead.hold(record)


def test_a_partition_is_committed_up_to_its_first_unwritten_record_and_only_when_it_moved() -> None:
    ahead: ReadAhead[At] = ReadAhead()
    _read(ahead, At("t", 0, 10), At("t", 1, 5), At("t", 0, 11), At("t", 1, 6))
    ahead.read("t", 2, 40)  # dead-lettered, never held
    ahead.still_unwritten([At("t", 0, 11), At("t", 1, 6)])

    assert ahead.to_commit() == {("t", 0): 11, ("t", 1): 6, ("t", 2): 41}
    ahead.committed(ahead.to_commit())
    assert ahead.to_commit() == {}
    ahead.still_unwritten([])
    assert ahead.to_commit() == {("t", 0): 12, ("t", 1): 7}


def test_a_revoked_partition_drops_its_held_records_and_is_never_committed() -> None:
    ahead: ReadAhead[At] = ReadAhead()
    _read(ahead, At("t", 0, 1), At("t", 1, 1), At("t", 0, 2))

    assert ahead.forget([("t", 0)]) == 2
    assert ahead.unwritten == [At("t", 1, 1)]
    assert ahead.to_commit() == {("t", 1): 1}
