"""Sharded near-duplicate detection with two real cleaner workers on the real broker: a pair whose
shared bands live on one shard only is found whichever worker owns it, and with a worker killed -9
mid-stream every page still gets its one verdict."""

from __future__ import annotations

import random
import signal
import time
import uuid
from collections import defaultdict

import pytest
from cleaner_harness import (
    CleanReader,
    article,
    html,
    publish,
    raw,
    start_cleaner,
    start_group_at_end,
    stop,
    unique_urls,
)
from confluent_kafka.admin import AdminClient

from ctrlgpt.settings import Settings
from streams import bus, cleaner_topics, topics
from streams.cleaner import FINGERPRINTS_TABLE, Cleaned, clean_messages, ensure_changelog, make_app
from streams.near_duplicates import band_keys, hamming, shard_of_band
from streams.records import PageFetched

pytestmark = pytest.mark.integration

SHARDS = 2


def _simhash(settings: Settings, page: PageFetched) -> int:
    [outcome] = clean_messages([topics.PAGES_RAW.encode(page)], min_chars=settings.clean_min_chars)
    assert isinstance(outcome, Cleaned), outcome
    return outcome.page.simhash


def _shared_shards(settings: Settings, first: int, second: int) -> set[int]:
    shared = set(band_keys(first, settings.near_duplicate_max_bits)) & set(
        band_keys(second, settings.near_duplicate_max_bits)
    )
    return {shard_of_band(key, SHARDS) for key in shared}


def _pair(settings: Settings, run: str, crawl: str, seed: int, only_on: int | None = None) -> tuple[PageFetched, ...]:
    """An article and a copy with a word or two changed, within the near-duplicate distance; `only_on`: their
    shared bands all belong to that shard."""
    rng = random.Random(seed)
    for attempt in range(400):
        text = article(f"{seed}-{attempt}")
        words = text.split(" ")
        for position in rng.sample(range(5, len(words) - 5), rng.randint(1, 2)):
            words[position] = "zebra"
        original = raw(f"https://shard-{run}.example.com/{seed}/original", crawl, html("Story", text))
        copy = raw(f"https://copy-{run}.example.com/{seed}/copy", crawl, html("Story", " ".join(words)))
        first, second = _simhash(settings, original), _simhash(settings, copy)
        if hamming(first, second) <= settings.near_duplicate_max_bits and (
            only_on is None or _shared_shards(settings, first, second) == {only_on}
        ):
            return original, copy
    raise AssertionError(f"no near-duplicate pair found for seed {seed}")


def _internal_partitions_by_member(settings: Settings, group: str, timeout: float = 120.0) -> list[list[int]]:
    """The internal topic's partitions each member holds, once two members hold one each."""
    internal = cleaner_topics.fingerprinted_topic(group, SHARDS).name
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    deadline, shares = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        description = admin.describe_consumer_groups([group])[group].result()
        shares = sorted(
            sorted(tp.partition for tp in member.assignment.topic_partitions if tp.topic == internal)
            for member in description.members
        )
        if shares == [[0], [1]]:
            return shares
        time.sleep(0.5)
    return shares


def test_a_pair_sharing_bands_on_one_shard_only_is_found_whichever_worker_owns_that_shard(settings, tmp_path):
    run = uuid.uuid4().hex
    app_id, crawl = f"test-cleaner-{run}", f"test-shards-{run}"
    bus.ensure_topics(settings, [topics.PAGES_RAW, topics.PAGES_CLEAN, topics.dead_letter_topic("clean")])
    start_group_at_end(settings, app_id, topics.PAGES_RAW.name)
    reader = CleanReader(settings, crawl)
    pairs = [_pair(settings, run, crawl, seed, only_on=seed % SHARDS) for seed in range(4)]
    log_path = tmp_path / "cleaner.log"
    workers = [
        start_cleaner(app_id, tmp_path / name, log_path, f"near_duplicate_shards={SHARDS}") for name in ("a", "b")
    ]
    try:
        shares = _internal_partitions_by_member(settings, app_id)
        # Originals first, each on another raw partition than its copy: the copy is the one found later.
        for n, (original, _) in enumerate(pairs):
            publish(settings, [original], partition=n % 3)
        reader.read_until(lambda pages: len(unique_urls(pages)) >= len(pairs), timeout=120)
        for n, (_, copy) in enumerate(pairs):
            publish(settings, [copy], partition=(n + 1) % 3)
        cleaned = reader.read_until(lambda pages: len(unique_urls(pages)) >= 2 * len(pairs), timeout=120)
        alive = [worker.poll() is None for worker in workers]
    finally:
        codes = [stop(worker) for worker in workers]
        reader.close()
    log = log_path.read_text(errors="replace")

    assert shares == [[0], [1]], (shares, log)
    verdicts = {(page.url, page.near_duplicate_of) for page in cleaned}
    expected = {(original.url, None) for original, _ in pairs} | {(copy.url, original.url) for original, copy in pairs}
    assert verdicts == expected, log
    # Pairs 1 and 3 share bands on shard 1 only: their copies were filed on shard 0 first, then retracted there.
    assert log.count("page.original_retracted") >= 2, log
    assert alive == [True, True] and codes == [0, 0], log


# A delivery guarantee as well: `make test-guarantees` runs it with the cleaner's kill -9 and hand-over tests.
@pytest.mark.delivery_guarantee
def test_a_worker_killed_mid_stream_leaves_every_page_its_one_verdict(settings, tmp_path):
    run = uuid.uuid4().hex
    app_id, crawl = f"test-cleaner-{run}", f"test-shards-kill-{run}"
    bus.ensure_topics(settings, [topics.PAGES_RAW, topics.PAGES_CLEAN, topics.dead_letter_topic("clean")])
    start_group_at_end(settings, app_id, topics.PAGES_RAW.name)
    reader = CleanReader(settings, crawl)
    pairs = [_pair(settings, run, crawl, 100 + seed) for seed in range(20)]
    singles = [raw(f"https://single-{run}.example.com/{n}", crawl, html(f"Single {n}", article(n))) for n in range(80)]
    pages = [page for pair in pairs for page in pair] + singles
    random.Random(run).shuffle(pages)
    log_path = tmp_path / "cleaner.log"
    workers = [
        start_cleaner(app_id, tmp_path / name, log_path, f"near_duplicate_shards={SHARDS}") for name in ("a", "b")
    ]
    try:
        shares = _internal_partitions_by_member(settings, app_id)
        publish(settings, pages)
        before_kill = len(unique_urls(reader.read_until(lambda found: len(found) >= 10, timeout=120)))
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(timeout=30)
        cleaned = reader.read_until(lambda found: len(unique_urls(found)) >= len(pages), timeout=240)
        # Repeats of what the killed worker had handled without committing come now or never: read them too.
        cleaned = reader.read_to_end(settings)
        survivor_alive = workers[1].poll() is None
    finally:
        stop(workers[0])
        survivor_rc = stop(workers[1])
        reader.close()
    log = log_path.read_text(errors="replace")
    verdicts: dict[str, set[str | None]] = defaultdict(set)
    for page in cleaned:
        verdicts[page.url].add(page.near_duplicate_of)
    print(f"pages before the kill: {before_kill}; on the clean topic: {len(cleaned)} for {len(verdicts)} URLs")

    assert shares == [[0], [1]], (shares, log)
    assert before_kill < len(pages), "the backlog was done before the kill: the test proves nothing"
    assert set(verdicts) == {page.url for page in pages}, log
    # A page cleaned again after the kill gets the verdict it had: one verdict per page.
    assert all(len(seen) == 1 for seen in verdicts.values()), {
        url: seen for url, seen in verdicts.items() if len(seen) > 1
    }
    verdict = {url: next(iter(seen)) for url, seen in verdicts.items()}
    # Pairs were published together: either may be the original, and the other names it. Never two originals.
    for original, copy in pairs:
        assert {verdict[original.url], verdict[copy.url]} in ({None, original.url}, {None, copy.url}), log
    assert all(verdict[single.url] is None for single in singles), log
    assert survivor_alive and survivor_rc == 0, log


def test_the_shard_count_can_grow_over_existing_topics_and_never_shrink(settings, tmp_path):
    app_id = f"test-cleaner-{uuid.uuid4().hex}"
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})

    def partitions(shards: int) -> dict[str, int]:
        local = settings.with_overrides(
            [f"cleaner_app_id={app_id}", f"data_dir={tmp_path}", f"near_duplicate_shards={shards}"]
        )
        ensure_changelog(local, make_app(local))
        metadata = admin.list_topics(timeout=10).topics
        return {name: len(topic.partitions) for name, topic in metadata.items() if name.startswith(app_id)}

    internal, changelog = f"{app_id}-fingerprinted", f"{app_id}-{FINGERPRINTS_TABLE}-changelog"
    try:
        assert partitions(1) == {internal: 1, changelog: 1}
        assert partitions(3) == {internal: 3, changelog: 3}
        with pytest.raises(RuntimeError, match="shards cannot be removed"):
            partitions(2)
    finally:
        for future in admin.delete_topics([internal, changelog], request_timeout=30).values():
            future.result()
