"""The cleaner: a faust-streaming app from raw pages to clean pages, in two agents.

`clean` turns each message of `PAGES_RAW` into a clean page with its SimHash
(one `PagesFingerprinted` per cleaned batch, on partition 0 of the app's internal
topic: streams.cleaner_topics), or a dead letter on the clean stage's topic with
the reason (not a valid record, no usable main text, boilerplate only): nothing
is dropped silently. It scales with the raw topic's partitions and cleans in
batches (one executor hop each).
`mark_near_duplicates` reads the internal topic, one partition per near-duplicate
shard (streams.near_duplicates): each shard looks a batch's pages up under the
bands it owns and passes the batch on to the next partition; the last one
publishes the pages to `PAGES_CLEAN`, a page nearly equal to an earlier one marked
`near_duplicate_of`. The shards share one table, each writing its own partition,
backed by its compacted changelog topic, so a restart or a rebalance restores
it. Clean pages and dead letters are delivered (streams.bus) before an event is
acked, and faust flushes its own sends before it commits offsets, so a crash
re-processes rather than loses a page (at least once; see docs/ingest.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import faust
import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
from faust.transport.drivers import aiokafka as faust_aiokafka

from ctrlgpt import worker_metrics
from ctrlgpt.retry import retrying
from ctrlgpt.settings import Settings
from streams import bus, cleaner_topics, topics
from streams.cleaner_topics import FingerprintedPage, PagesFingerprinted, RetractedOriginal
from streams.cleaning import PageRejected, clean_page
from streams.near_duplicates import BandIndex, Nearest, ShardOriginals, retract, shard_step, simhashes
from streams.partition_progress import OffsetWatch, Rewind
from streams.records import PageCleaned, PageFetched, Stage
from streams.topics import ContractError

__all__ = [
    "FINGERPRINTS_TABLE",
    "STAGE",
    "Cleaned",
    "Rejection",
    "clean_message",
    "clean_messages",
    "main",
    "make_app",
    "pack_by_size",
    "retractions",
]

STAGE: Stage = "clean"
# Raw pages can be large; the same bound as the confluent producers of streams.bus.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
# Room for a record's envelope (event id, schema version, the list's commas) and Kafka's framing: the
# pages of one PagesFingerprinted add up to at most MAX_MESSAGE_BYTES less this.
ENVELOPE_BYTES = 64 * 1024
# The exit status of a worker whose batch failed for a reason no retry cures (a bug, a record Kafka refuses):
# faust would restart the agent and commit past the batch, so the process exits and its supervisor restarts it.
BATCH_FAILED_EXIT_CODE = 70
MAX_BACKOFF_S = 30.0
PRODUCER_LINGER_S = 0.01
PRODUCER_BATCH_BYTES = 1024 * 1024
# murmur2, as Kafka's Java clients and aiokafka hash keys: a URL stays on the partition faust's producer put it
# on before clean pages went through streams.bus (librdkafka's own default hashes with CRC32).
CLEAN_PAGES_PRODUCER = {"partitioner": "murmur2_random"}
# Renamed from "page-fingerprints" (band key -> pages, seven changelog records per page) when the table
# became one fingerprint per original page; before, "near-duplicates" was sharded like the raw topic.
FINGERPRINTS_TABLE = "original-fingerprints"
# Events cleaned per executor hop; a batch is handled once full or BATCH_WITHIN_S after its first event,
# which bounds the latency a quiet topic adds.
BATCH_MAX_EVENTS = 100
BATCH_WITHIN_S = 0.1
# A rewind's first messages arrive within a fetch or two; events fetched before it keep coming meanwhile.
REWIND_RETRY_S = 10.0
REWIND_MAX_ATTEMPTS = 3

log = structlog.get_logger()


@dataclass(frozen=True)
class Rejection:
    """Why a raw message produced no clean page: the dead letter's reason and error type."""

    reason: str
    error_type: str


@dataclass(frozen=True)
class Cleaned:
    """A clean page with its text's SimHash (streams.near_duplicates) and its size on the internal topic,
    computed with it off the event loop."""

    page: FingerprintedPage
    encoded_bytes: int


def clean_message(value: bytes | None, *, min_chars: int) -> PageCleaned | Rejection:
    """One raw message -> its clean page, or the reason it has none."""
    try:
        fetched = cast(PageFetched, topics.PAGES_RAW.decode(value))
    except ContractError as exc:
        return Rejection(str(exc), type(exc).__name__)
    try:
        return clean_page(fetched, min_chars=min_chars)
    except PageRejected as exc:
        return Rejection(f"{fetched.url}: {exc}", type(exc).__name__)
    except Exception as exc:
        return Rejection(f"{fetched.url}: cleaning failed: {exc!r}", type(exc).__name__)


def clean_messages(
    values: list[bytes | None], *, min_chars: int, max_page_bytes: int = MAX_MESSAGE_BYTES - ENVELOPE_BYTES
) -> list[Cleaned | Rejection]:
    """A batch of raw messages -> each one's clean page with its SimHash, or the reason it has none.

    A clean page whose record would not fit in a Kafka message (a raw page just under the limit can
    clean to almost as much text) is rejected here, so that no send of it fails later.
    """
    outcomes = [clean_message(value, min_chars=min_chars) for value in values]
    pages = [outcome for outcome in outcomes if isinstance(outcome, PageCleaned)]
    fingerprints = iter(simhashes([page.text for page in pages]))
    return [
        _sized(FingerprintedPage(page=outcome, simhash=next(fingerprints)), max_page_bytes)
        if isinstance(outcome, PageCleaned)
        else outcome
        for outcome in outcomes
    ]


def _sized(page: FingerprintedPage, max_page_bytes: int) -> Cleaned | Rejection:
    size = len(page.model_dump_json().encode())
    if size > max_page_bytes:
        return Rejection(
            f"{page.page.url}: clean page of {size} bytes, over the {max_page_bytes} bytes a message may carry",
            "PageTooLarge",
        )
    return Cleaned(page, size)


def pack_by_size(sizes: list[int], max_bytes: int) -> list[list[int]]:
    """Indexes of `sizes` in order, in consecutive groups whose sizes add up to at most `max_bytes` each
    (a size over `max_bytes` alone in its group)."""
    groups: list[list[int]] = []
    total = max_bytes + 1
    for index, size in enumerate(sizes):
        if total + size > max_bytes:
            groups.append([])
            total = 0
        groups[-1].append(index)
        total += size
    return groups


class IdempotentProducer(faust_aiokafka.Producer):
    """faust's aiokafka producer with acks=all and idempotence always, as every ctrlgpt producer (streams.bus):
    faust turns idempotence on only inside transactions, and a retried send after a broker failover
    could otherwise write a clean page twice."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class IdempotentTransport(faust_aiokafka.Transport):
    Producer = IdempotentProducer


def retractions(pages: list[FingerprintedPage]) -> dict[int, list[RetractedOriginal]]:
    """Shard -> the pages it filed as originals that a later shard found near one (to be unfiled there)."""
    by_shard: dict[int, list[RetractedOriginal]] = {}
    for page in pages:
        if page.nearest_url is None:
            continue
        for shard in page.filed_on:
            by_shard.setdefault(shard, []).append(RetractedOriginal(url=page.page.url, simhash=page.simhash))
    return by_shard


def step_on_shard(
    page: FingerprintedPage, shard: int, originals: ShardOriginals, index: BandIndex
) -> FingerprintedPage:
    """The page after this shard's lookup (streams.near_duplicates.shard_step): nearest original so far, filed or not."""
    before = None if page.nearest_url is None else Nearest(page.nearest_distance or 0, page.nearest_url)
    nearest, filed = shard_step(originals, index, page.simhash, page.page.url, before)
    if nearest == before and not filed:
        return page
    return page.model_copy(
        update={
            "nearest_url": nearest.url if nearest else None,
            "nearest_distance": nearest.distance if nearest else None,
            "filed_on": [*page.filed_on, shard] if filed and shard not in page.filed_on else page.filed_on,
        }
    )


def make_app(settings: Settings) -> faust.App:
    app = faust.App(
        settings.cleaner_app_id,
        broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        datadir=str(settings.data_dir / "faust" / settings.cleaner_app_id),
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.replication_factor,
        # Topics belong to ctrlgpt's registry (streams.topics), created through streams.bus, never by faust.
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=False,
        producer_max_request_size=MAX_MESSAGE_BYTES,
        # aiokafka's defaults (no linger, 16 KiB batches) send a request every few clean pages; the sends of a
        # batch are flushed before its offsets are committed anyway, so waiting 10 ms for more costs no latency.
        producer_linger=PRODUCER_LINGER_S,
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        consumer_auto_offset_reset="earliest",
        # faust's default of 60 s keeps a killed worker's partitions idle that long before a rebalance.
        broker_session_timeout=settings.cleaner_session_timeout_s,
    )
    # Before anything asks for app.transport, which would build faust's own.
    app.transport = IdempotentTransport(app.conf.broker_consumer, app)
    shards = settings.near_duplicate_shards
    fingerprinted_topic = cleaner_topics.fingerprinted_topic(settings.cleaner_app_id, shards)
    raw_pages = app.topic(topics.PAGES_RAW.name)
    fingerprinted = app.topic(fingerprinted_topic.name)
    # Each shard's originals, URL -> SimHash (streams.near_duplicates.original_key), in one table partitioned
    # as its source topic: a shard's writes go to its own changelog partition. The changelog is made by main().
    fingerprints = app.Table(
        FINGERPRINTS_TABLE, partitions=shards, schema=faust.Schema(key_serializer="json", value_serializer="json")
    )
    originals = [ShardOriginals(fingerprints, shard) for shard in range(shards)]
    # Derived from the table, in memory: rebuilt whenever faust has restored the table (start, rebalance).
    band_indexes = [BandIndex(settings.near_duplicate_max_bits, shard=shard, shards=shards) for shard in range(shards)]

    @fingerprints.on_recover
    async def rebuild_band_index() -> None:
        for shard in range(shards):
            band_indexes[shard] = BandIndex.of(
                originals[shard].items(), settings.near_duplicate_max_bits, shard=shard, shards=shards
            )
        log.info("cleaner.band_index_rebuilt", originals=len(fingerprints), shards=shards)

    offsets: OffsetWatch = OffsetWatch(REWIND_RETRY_S, REWIND_MAX_ATTEMPTS)
    sources = {topics.PAGES_RAW.name, fingerprinted_topic.name}
    # Never subscribes, so it never joins the group: it only reads the group's committed offsets.
    positions = bus.make_consumer(settings, settings.cleaner_app_id)
    # Clean pages and dead letters go through streams.bus: librdkafka sends a page for a fraction of what
    # faust's aiokafka producer costs the event loop (docs/ingest.md), and dead letters are built exactly as
    # every other stage builds them.
    producer = bus.make_producer(settings, **CLEAN_PAGES_PRODUCER)

    @app.on_partitions_revoked.connect
    async def forget_revoked(sender: faust.App, revoked: set, **kwargs: object) -> None:
        offsets.forget(revoked)

    @app.on_partitions_assigned.connect
    async def watch_assigned(sender: faust.App, assigned: set, **kwargs: object) -> None:
        offsets.assigned(assigned, asyncio.get_running_loop().time())

    @app.timer(REWIND_RETRY_S)
    async def rewind_stalled() -> None:
        """Seek back an idle partition whose committed offset is behind its end (skipped last messages)."""
        if app.rebalancing or app.tables.recovery.in_recovery:
            return
        now = asyncio.get_running_loop().time()
        idle = offsets.idle({tp for tp in app.consumer.assignment() if tp.topic in sources}, now)
        if not idle:
            return
        try:
            behind = await asyncio.to_thread(committed_behind_end_retrying, positions, idle)
        except KafkaException as exc:
            # Kafka away longer than a tick: nothing to rewind that cannot wait for the next one.
            log.warning("cleaner.stalled_check_skipped", error=str(exc))
            return
        for tp, committed in behind.items():
            log.warning(
                "cleaner.stalled_partition_rewound", topic=tp.topic, partition=tp.partition, rewind_to=committed
            )
            offsets.rewound(tp, now)
            await seek_on_consumer_thread(tp, committed)

    async def seek_on_consumer_thread(tp: object, offset: int) -> None:
        # faust's `consumer.seek` calls aiokafka from this thread while the consumer's own thread fetches,
        # and aiokafka is not thread-safe (seen: a KeyError in its fetcher killed a worker); `seek_wait` runs
        # the seek on the consumer's thread and resets faust's read offset as `seek` does.
        await app.consumer.seek_wait({tp: offset})

    async def rewind_skipped(events: list[faust.EventT]) -> None:
        """Seek back over messages the stream never delivered (faust-streaming #596, streams.partition_progress)."""
        now = asyncio.get_running_loop().time()
        rewinds: dict[object, Rewind] = {}
        for event in events:
            tp, offset = event.message.tp, event.message.offset
            # faust's own record of the offset it committed (the next to read); no public accessor.
            committed = app.consumer._committed_offset.get(tp)
            if committed is None and not offsets.knows(tp):
                # Nothing committed yet (faust also keeps a committed 0 as None): the worker began at the
                # partition's earliest offset, and messages skipped from there must be found too (seen: a new
                # owner of an internal partition with no commit lost its first messages to #596 unnoticed).
                try:
                    committed = await asyncio.to_thread(earliest_offset_retrying, positions, tp)
                except KafkaException as exc:
                    # Kafka away longer than a tick: track from this event, as before (a pause, never a crash).
                    log.warning(
                        "cleaner.earliest_offset_unknown", topic=tp.topic, partition=tp.partition, error=str(exc)
                    )
            rewind = offsets.handle(tp, offset, committed, now)
            if rewind is not None:
                rewinds.setdefault(tp, rewind)
        for tp, rewind in rewinds.items():
            if rewind.attempt > REWIND_MAX_ATTEMPTS:
                first, end = offsets.give_up(tp)
                log.error("cleaner.skipped_offsets_lost", topic=tp.topic, partition=tp.partition, first=first, end=end)
                continue
            log.warning(
                "cleaner.skipped_offsets_rewound",
                topic=tp.topic,
                partition=tp.partition,
                rewind_to=rewind.offset,
                seen=rewind.seen,
                attempt=rewind.attempt,
            )
            await seek_on_consumer_thread(tp, rewind.offset)

    def deliver_dead_letters(rejected: list[tuple[faust.types.Message, Rejection]]) -> None:
        # Off the event loop, letters included: encoding a page of megabytes would stall heartbeats and timers.
        letters = [
            bus.dead_letter(
                STAGE,
                source_topic=message.topic,
                value=message.value,
                key=message.key,
                partition=message.partition,
                offset=message.offset,
                reason=rejection.reason,
                error_type=rejection.error_type,
            )
            for message, rejection in rejected
        ]
        bus.deliver_all(producer, letters, max_backoff=MAX_BACKOFF_S)

    async def send_dead_letters(rejected: list[tuple[faust.types.Message, Rejection]]) -> None:
        """Delivered before the events are acked, so no offset is committed without its dead letter."""
        await asyncio.to_thread(deliver_dead_letters, rejected)

    # Concurrency 1 (both agents): faust-streaming can commit past in-flight events with more.
    @app.agent(raw_pages, concurrency=1)
    async def clean(stream: faust.StreamT) -> None:
        loop = asyncio.get_running_loop()
        clean_batch = partial(clean_messages, min_chars=settings.clean_min_chars)

        async def handle(events: list[faust.EventT]) -> None:
            # trafilatura is CPU-bound; off the event loop (one hop per batch), Kafka heartbeats keep going.
            outcomes = await loop.run_in_executor(None, clean_batch, [event.message.value for event in events])
            cleaned = [outcome for outcome in outcomes if isinstance(outcome, Cleaned)]
            # One record per batch unless the pages would not fit in one message together.
            for group in pack_by_size([page.encoded_bytes for page in cleaned], MAX_MESSAGE_BYTES - ENVELOPE_BYTES):
                # faust flushes its producer before it commits the batch's offsets: at least once.
                record = PagesFingerprinted(pages=[cleaned[index].page for index in group])
                await send_to_shard(record, 0)
            rejected = [
                (event.message, outcome) for event, outcome in zip(events, outcomes) if isinstance(outcome, Rejection)
            ]
            if rejected:
                await send_dead_letters(rejected)
            worker_metrics.RECORDS.labels(STAGE).inc(len(events))
            log.info("pages.batch_cleaned", events=len(events))
            await rewind_skipped(events)

        # faust acks a batch's events after this body has handled them, and also when the agent is
        # cancelled (the worker stopping): the batch is finished first, so no event is acked unsent.
        async for events in stream.take_events(BATCH_MAX_EVENTS, within=BATCH_WITHIN_S):
            await _finish_or_exit(handle(list(events)))

    @app.agent(fingerprinted, concurrency=1)
    async def mark_near_duplicates(stream: faust.StreamT) -> None:
        # One event is a whole cleaned batch; faust knows it as the current event of each table write.
        async for event in stream.events():
            await _finish_or_exit(mark(event))

    async def send_to_shard(record: PagesFingerprinted, shard: int) -> None:
        # faust flushes its producer before it commits the offsets of the event being handled: at least once.
        await fingerprinted.send(
            key=fingerprinted_topic.key_of(record), value=fingerprinted_topic.encode(record), partition=shard
        )

    async def mark(event: faust.EventT) -> None:
        message = event.message
        shard = message.partition
        try:
            record = cast(PagesFingerprinted, fingerprinted_topic.decode(message.value))
        except ContractError as exc:
            await send_dead_letters([(message, Rejection(str(exc), type(exc).__name__))])
        else:
            for retracted in record.retracted:
                if retract(originals[shard], band_indexes[shard], retracted.simhash, retracted.url):
                    log.info("page.original_retracted", url=retracted.url, shard=shard)
            if record.pages:
                pages = [step_on_shard(page, shard, originals[shard], band_indexes[shard]) for page in record.pages]
                if shard + 1 < shards:
                    await send_to_shard(record.model_copy(update={"pages": pages}), shard + 1)
                else:
                    await publish_marked(pages)
        await rewind_skipped([event])

    async def publish_marked(pages: list[FingerprintedPage]) -> None:
        marked = []
        for fingerprinted_page in pages:
            page = fingerprinted_page.page
            if fingerprinted_page.nearest_url is not None:
                page = page.model_copy(update={"near_duplicate_of": fingerprinted_page.nearest_url})
                log.info("page.near_duplicate", url=page.url, original=fingerprinted_page.nearest_url)
            marked.append(bus.Outgoing.of(topics.PAGES_CLEAN, page))
        for shard, retracted in retractions(pages).items():
            await send_to_shard(PagesFingerprinted(retracted=retracted), shard)
        # Delivered before the event is acked (faust then flushes its changelog writes before it commits).
        await asyncio.to_thread(bus.deliver_all, producer, marked, max_backoff=MAX_BACKOFF_S)
        log.info("pages.batch_marked", pages=len(pages))

    return app


async def _finish_or_exit(work: Coroutine[object, object, None]) -> None:
    """`_finish_even_if_cancelled(work)`; if it fails, the process exits at once, its batch unacked.

    faust's answer to an agent that raises is to restart the agent and go on with the next events,
    and the next commit passes over the failed batch (seen: a dead letter Kafka refused as too large
    took the batch's other dead letters with it, and nothing was left to say so). Exiting without a
    commit leaves the batch to the next start (the supervisor restarts the worker): at least once, as ever.
    Kafka being away is not such a failure: every send here waits for it.
    """
    try:
        await _finish_even_if_cancelled(work)
    except Exception:
        log.critical("cleaner.batch_failed_exiting", exc_info=True, exit_code=BATCH_FAILED_EXIT_CODE)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(BATCH_FAILED_EXIT_CODE)


async def _finish_even_if_cancelled(work: Coroutine[object, object, None]) -> None:
    """Run `work` to its end even if the agent is cancelled meanwhile (the worker stopping), then re-raise."""
    handling = asyncio.ensure_future(work)
    try:
        await asyncio.shield(handling)
    except asyncio.CancelledError:
        await handling
        raise


def committed_behind_end_retrying(consumer: Consumer, partitions: list) -> dict:
    """`committed_behind_end`, retried for up to a timer's tick while Kafka is away (then its error is raised)."""
    wait = retrying(KafkaException, what="cleaner committed offsets", give_up_after_s=REWIND_RETRY_S)
    return wait(committed_behind_end, consumer, partitions)


def earliest_offset_retrying(consumer: Consumer, tp: object) -> int:
    """The first offset still in a partition (a faust TP), retried for up to a timer's tick while Kafka is away."""
    wait = retrying(KafkaException, what="cleaner earliest offset", give_up_after_s=REWIND_RETRY_S)
    low, _ = wait(consumer.get_watermark_offsets, TopicPartition(tp.topic, tp.partition), timeout=10)
    return low


def committed_behind_end(consumer: Consumer, partitions: list) -> dict:
    """Of `partitions` (faust TPs), those whose committed offset is behind the partition's end: tp -> committed."""
    committed = consumer.committed([TopicPartition(tp.topic, tp.partition) for tp in partitions], timeout=10)
    behind = {}
    for tp, position in zip(partitions, committed):
        if position.offset < 0:
            continue  # nothing committed yet: the worker reads from the start, as configured
        _, end = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
        if end > position.offset:
            behind[tp] = position.offset
    return behind


def ensure_changelog(settings: Settings, app: faust.App) -> None:
    """Create the internal topic and the fingerprint table's changelog, one partition per near-duplicate
    shard (the changelog compacted), or grow them to it.

    The app keeps `topic_allow_declare=False` so that faust never creates topics
    with its own settings; its internal topic (streams.cleaner_topics) and this changelog are made here.
    A shard count above the topics' partitions adds partitions to both (a deployment from before sharding
    had one: its originals stay shard 0's); one below them is refused, as Kafka cannot remove partitions.
    """
    shards = settings.near_duplicate_shards
    source = cleaner_topics.fingerprinted_topic(settings.cleaner_app_id, shards)
    bus.ensure_topics(settings, [source])
    changelog = app.tables[FINGERPRINTS_TABLE].changelog_topic.get_topic_name()
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    metadata = admin.list_topics(timeout=10).topics
    existing = {name: len(metadata[name].partitions) for name in (source.name, changelog) if name in metadata}
    for name, partitions in existing.items():
        if partitions > shards:
            raise RuntimeError(
                f"{name} has {partitions} partitions, more than near_duplicate_shards={shards}: shards cannot be "
                "removed; set CTRLGPT_NEAR_DUPLICATE_SHARDS to at least that, or use a new cleaner_app_id"
            )
    grow = [NewPartitions(name, shards) for name, partitions in existing.items() if partitions < shards]
    for name, future in (admin.create_partitions(grow) if grow else {}).items():
        try:
            future.result()
        except KafkaException as exc:
            # Another worker starting at the same moment may have added them first.
            if exc.args[0].code() != KafkaError.INVALID_PARTITIONS:
                raise
            now = len(admin.list_topics(name, timeout=10).topics[name].partitions)
            if now != shards:
                raise
        log.info("cleaner.shards_added", topic=name, partitions=shards)
    if changelog in existing:
        return
    new = NewTopic(
        changelog,
        num_partitions=shards,
        replication_factor=settings.replication_factor,
        config={"cleanup.policy": "compact", **bus.replication_config(settings)},
    )
    try:
        admin.create_topics([new])[changelog].result()
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
    bus.wait_until_known(settings, [changelog])
    log.info("cleaner.changelog_created", topic=changelog, partitions=shards)


def main(settings: Settings, args: argparse.Namespace) -> int:
    bus.ensure_topics(settings, [topics.PAGES_RAW, topics.PAGES_CLEAN, topics.dead_letter_topic(STAGE)])
    app = make_app(settings)
    ensure_changelog(settings, app)
    app.conf.datadir.mkdir(parents=True, exist_ok=True)
    log.info("cleaner.starting", app_id=settings.cleaner_app_id, bootstrap=settings.kafka_bootstrap)
    # Started programmatically, not through faust's click CLI; logging stays ours
    # (override_logging=False). The worker stops gracefully on SIGTERM/SIGINT.
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True, override_logging=False)
    # The progress spinner is for terminals: it writes escape codes into the log stream.
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        return int(exit_.code or 0)
