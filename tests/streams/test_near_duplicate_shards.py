"""Sharded near-duplicate lookups (pure): band ownership, a page's steps through the shards, retractions."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from streams.cleaner import retractions, step_on_shard
from streams.cleaner_topics import FingerprintedPage, PagesFingerprinted
from streams.near_duplicates import (
    BandIndex,
    Nearest,
    ShardOriginals,
    band_keys,
    check_and_remember,
    hamming,
    original_key,
    retract,
    shard_of_band,
    shard_of_key,
    shard_step,
)
from streams.records import PageCleaned

MAX_BITS = 6


def _near(rng: random.Random, fingerprint: int, bits: int) -> int:
    for bit in rng.sample(range(64), bits):
        fingerprint ^= 1 << bit
    return fingerprint


def _stream(seed: int, originals: int = 300, copies: int = 600) -> list[tuple[str, int]]:
    """Pages in arrival order: random originals, and copies a few bits from an earlier page (copies of copies too)."""
    rng = random.Random(seed)
    pages = [(f"https://a.example/{n}", rng.getrandbits(64)) for n in range(originals)]
    for n in range(copies):
        _, source = rng.choice(pages)
        pages.append((f"https://b.example/{n}", _near(rng, source, rng.randint(0, 9))))
    return pages


class _Shards:
    """N shards as the cleaner keeps them: one table for all, an index per shard."""

    def __init__(self, shards: int) -> None:
        self.table: dict[str, int] = {}
        self.originals = [ShardOriginals(self.table, shard) for shard in range(shards)]
        self.indexes = [BandIndex(MAX_BITS, shard=shard, shards=shards) for shard in range(shards)]

    def verdict(self, fingerprint: int, url: str) -> str | None:
        """A page's way through every shard, then the retractions, before the next page arrives."""
        nearest, filed_on = None, []
        for shard, (originals, index) in enumerate(zip(self.originals, self.indexes)):
            nearest, filed = shard_step(originals, index, fingerprint, url, nearest)
            if filed:
                filed_on.append(shard)
        if nearest is not None:
            for shard in filed_on:
                assert retract(self.originals[shard], self.indexes[shard], fingerprint, url)
        return nearest.url if nearest else None


def test_each_band_key_has_one_owner_the_same_in_every_process_and_every_shard_owns_some():
    keys = [key for n in range(500) for key in band_keys(random.Random(n).getrandbits(64), MAX_BITS)]
    owners = [shard_of_band(key, 3) for key in keys]
    assert set(owners) == {0, 1, 2}
    assert min(owners.count(shard) for shard in range(3)) > len(keys) / 4
    # Pinned: the owner of a band key must not change between releases or processes (tables are filed by it).
    assert [shard_of_band(key, 3) for key in band_keys(0x6D585C18C08D4EE3, MAX_BITS)] == [0, 0, 1, 1, 2, 1, 1]
    assert {shard_of_band(key, 1) for key in keys} == {0}


def test_a_shards_index_files_a_page_under_its_own_bands_only():
    fingerprint = 0x6D585C18C08D4EE3
    indexes = [BandIndex(MAX_BITS, shard=shard, shards=3) for shard in range(3)]
    assert sorted(key for index in indexes for key in index.keys(fingerprint)) == band_keys(fingerprint, MAX_BITS)
    with pytest.raises(ValueError):
        BandIndex(MAX_BITS, shard=3, shards=3)


@pytest.mark.parametrize("shards", [2, 3, 5])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pages_one_after_another_get_the_verdicts_of_one_shard_whatever_the_shard_count(shards, seed):
    pages = _stream(seed)
    single_originals, single_index = {}, BandIndex(MAX_BITS)
    expected = [check_and_remember(single_originals, single_index, fingerprint, url) for url, fingerprint in pages]
    sharded = _Shards(shards)

    verdicts = [sharded.verdict(fingerprint, url) for url, fingerprint in pages]

    assert verdicts == expected
    assert sum(v is not None for v in verdicts) > len(pages) / 3, "the stream has too few near duplicates to tell"
    # The same originals, each filed on every shard (under the bands that shard owns).
    for shard in range(shards):
        assert dict(sharded.originals[shard].items()) == single_originals


def test_two_pages_that_share_a_band_meet_on_its_shard_in_whichever_order_the_other_shards_see_them():
    # Pages in flight together: the first reaches shard 1 before the second, shard 0 sees them the other way round.
    rng = random.Random(7)
    first = rng.getrandbits(64)
    second = _near(rng, first, 5)
    shared = {shard_of_band(key, 2) for key in set(band_keys(first, MAX_BITS)) & set(band_keys(second, MAX_BITS))}
    assert shared, "near pages share a band"
    sharded = _Shards(2)
    steps: dict[str, tuple[Nearest | None, list[int]]] = {"first": (None, []), "second": (None, [])}
    order = [("second", 0), ("first", 0), ("first", 1), ("second", 1)]
    for name, shard in order:
        fingerprint, url = (first, "https://a.example/first") if name == "first" else (second, "https://b.example/2")
        nearest, filed_on = steps[name]
        nearest, filed = shard_step(sharded.originals[shard], sharded.indexes[shard], fingerprint, url, nearest)
        steps[name] = (nearest, [*filed_on, shard] if filed else filed_on)

    verdicts = {name: nearest.url if nearest else None for name, (nearest, _) in steps.items()}
    # Exactly one of the two is the original, and the other names it: the pair is never two originals.
    assert sorted(verdicts.values(), key=str) == sorted(
        [None, "https://a.example/first" if verdicts["second"] else "https://b.example/2"], key=str
    )
    assert hamming(first, second) <= MAX_BITS


def test_a_retraction_unfiles_only_the_fingerprint_it_names():
    table: dict[str, int] = {}
    originals, index = ShardOriginals(table, 1), BandIndex(MAX_BITS, shard=1, shards=2)
    shard_step(originals, index, 0xFFFF, "https://a.example/x", None)
    assert table == {"1 https://a.example/x": 0xFFFF}
    assert not retract(originals, index, 0xFFFE, "https://a.example/x")  # a newer fetch is filed: kept
    assert retract(originals, index, 0xFFFF, "https://a.example/x")
    assert table == {}
    assert index.find_nearest(0xFFFF, "https://b.example/y") is None
    assert not retract(originals, index, 0xFFFF, "https://a.example/x")


def test_shard_zero_keys_are_the_bare_urls_of_before_sharding():
    assert original_key(0, "https://a.example/x") == "https://a.example/x"
    assert original_key(2, "https://a.example/x") == "2 https://a.example/x"
    assert shard_of_key("2 https://a.example/x") == (2, "https://a.example/x")
    assert shard_of_key("https://a.example/x") == (0, "https://a.example/x")
    table = {"https://a.example/x": 1, "1 https://a.example/x": 2, "1 https://a.example/y": 3}
    assert dict(ShardOriginals(table, 1)) == {"https://a.example/x": 2, "https://a.example/y": 3}
    assert len(ShardOriginals(table, 0)) == 1


def _page(url: str, simhash: int) -> FingerprintedPage:
    page = PageCleaned(
        url=url,
        domain="example.org",
        title="t",
        text="text",
        summary="s",
        language="en",
        content_sha256="0" * 64,
        fetched_at=datetime(2026, 1, 1, tzinfo=UTC),
        crawl_id="test",
    )
    return FingerprintedPage(page=page, simhash=simhash)


def test_a_record_carries_a_pages_nearest_original_and_filing_from_shard_to_shard():
    table: dict[str, int] = {}
    shards = [(ShardOriginals(table, shard), BandIndex(MAX_BITS, shard=shard, shards=2)) for shard in range(2)]
    original, copy = _page("https://a.example/o", 0x0F0F_0F0F_0F0F_0F0F), _page("https://b.example/c", 0)
    copy = copy.model_copy(update={"simhash": original.simhash ^ 0b111})
    for shard, (originals, index) in enumerate(shards):
        original = step_on_shard(original, shard, originals, index)
    assert (original.nearest_url, original.filed_on) == (None, [0, 1])
    for shard, (originals, index) in enumerate(shards):
        copy = step_on_shard(copy, shard, originals, index)
    assert (copy.nearest_url, copy.nearest_distance, copy.filed_on) == ("https://a.example/o", 3, [])
    assert retractions([original, copy]) == {}
    late = original.model_copy(update={"nearest_url": "https://a.example/z", "nearest_distance": 2})
    assert {shard: [r.url for r in urls] for shard, urls in retractions([late]).items()} == {
        0: ["https://a.example/o"],
        1: ["https://a.example/o"],
    }


def test_a_record_carries_pages_or_retractions_never_nothing():
    with pytest.raises(ValueError):
        PagesFingerprinted()
