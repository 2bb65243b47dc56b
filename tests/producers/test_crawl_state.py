"""The crawler's SQLite memory: visits and requested links survive a restart."""

from __future__ import annotations

from pathlib import Path

from producers.conditional import Validators
from producers.crawl_state import CrawlState


def test_visits_and_requests_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "crawler" / "state.sqlite3"
    state = CrawlState(path)
    state.record_visit(
        "c1", "http://a.test/", outcome="fetched", status=200, requested=["http://a.test/x", "http://b.test/y"]
    )
    state.close()

    state = CrawlState(path)
    assert state.visited("c1", "http://a.test/")
    assert not state.visited("c2", "http://a.test/")
    assert not state.visited("c1", "http://a.test/x")
    assert state.known("c1", ["http://a.test/", "http://a.test/x", "http://a.test/z"]) == {
        "http://a.test/",
        "http://a.test/x",
    }
    assert state.requested_per_host("c1", ["a.test", "b.test", "c.test"]) == {"a.test": 2, "b.test": 1, "c.test": 0}
    state.close()


def test_recording_twice_is_harmless(tmp_path: Path) -> None:
    state = CrawlState(tmp_path / "state.sqlite3")
    for _ in range(2):
        state.record_visit("c1", "http://a.test/", outcome="dead-lettered", status=500, requested=["http://a.test/"])
    assert state.requested_per_host("c1", ["a.test"]) == {"a.test": 1}
    assert state.known("c1", [f"http://a.test/{i}" for i in range(1200)]) == set()
    state.close()


def test_validators_outlive_the_crawl_and_outcomes_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    state = CrawlState(path)
    seen = Validators('"v1"', None, "abc", ("http://a.test/x",))
    state.record_visit("c1", "http://a.test/", outcome="fetched", status=200, validators=seen)
    state.record_visit("c1", "http://a.test/y", outcome="unchanged", status=304)
    state.record_visit("c1", "http://a.test/z", outcome="unchanged", status=200)
    state.close()

    state = CrawlState(path)
    assert state.validators("http://a.test/") == seen
    assert state.validators("http://a.test/y") is None
    assert state.outcomes("c1") == {"fetched": 1, "unchanged": 2}
    assert state.outcomes("c2") == {}
