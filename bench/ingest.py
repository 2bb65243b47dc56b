"""Ingest benchmark: extraction alone, our cleaning alone, and clean + index through Kafka; prints figures.

    .venv/bin/python bench/ingest.py [--pages N] [--rounds N] [--slice-pages N] [--cleaners N] [--rate R] [--seconds S]

Needs the local services (`ctrlgpt services up`). The workers start first (cleaner
workers, `ctrlgpt cleaner`, a faust app id of their own; an index sink, `ctrlgpt
index-sink`, a consumer group of its own, into a throwaway alias) and one page goes
through them. Then `--rounds` throughput rounds, each on a fresh seeded corpus
(bench/ingest_corpus.py), each going through it `--slice-pages` pages at a time and
measuring on each slice, back to back:

1. reference: trafilatura's extraction alone, single process, pages/s and pages per
   CPU-second;
2. `streams.cleaning.clean_page` alone, single process, the same two rates;
3. pipeline: the same pages published to `PAGES_RAW` as `PageFetched` (a crawl id of
   the round's own), cleaned and indexed; pages/s from the first publish until every
   accepted page is searchable, and the CPU time each process (cleaners, sink, Kafka,
   Elasticsearch) spent meanwhile: pages per CPU-second is the rate "per core".

A round sums its slices; each figure is the median of the rounds. Slices keep the
reference and the pipeline within seconds of each other: the machine's speed drifts
by a tenth and more within a minute. Last:

4. crawl-to-searchable latency at a steady publish rate, p50 and p99: from the
   publish of a page to the first search that finds it.

The bench's groups start at the end of the shared topics, so they read only this
run's pages; the alias, its template, the groups and the cleaner app's own topics are
removed at the end. The pages stay on the shared topics (their retention applies),
under hosts named `bench-<run>-<round>.example.com`, where the standard workers will
also see them.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import IO

import psutil
import trafilatura
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from elasticsearch import Elasticsearch
from ingest_corpus import BenchPage, build_corpus, percentile
from machine import describe as describe_machine
from report import Report

from consumers.search_index import PageIndexSink, document_id
from ctrlgpt.settings import REPO_ROOT, Settings
from deploy import processes
from deploy.demo_site import load_articles
from streams import bus, topics
from streams.cleaning import PageRejected, clean_page
from streams.records import PageFetched

WARM_UP_PAGES = 20
POLL_S = 0.1
READY_TIMEOUT_S = 300.0


def fetched(page: BenchPage, host: str, crawl_id: str, prefix: str = "") -> PageFetched:
    url = f"https://{host}{prefix}{page.path}"
    return PageFetched(url=url, final_url=url, crawl_id=crawl_id, status=200, html=page.html)


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


@dataclass(frozen=True)
class Timing:
    wall_s: float
    cpu_s: float

    def __add__(self, other: Timing) -> Timing:
        return Timing(self.wall_s + other.wall_s, self.cpu_s + other.cpu_s)


def time_each(pages: list[PageFetched], work: Callable[[PageFetched], object]) -> Timing:
    """Wall and CPU seconds to run `work` over every page."""
    began, began_cpu = time.perf_counter(), time.process_time()
    for page in pages:
        work(page)
    return Timing(time.perf_counter() - began, time.process_time() - began_cpu)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds a process and its children have used so far (0 if it is gone)."""
    if pid is None:
        return 0.0
    try:
        process = psutil.Process(pid)
        total = 0.0
        for member in (process, *process.children(recursive=True)):
            times = member.cpu_times()
            total += times.user + times.system
        return total
    except psutil.NoSuchProcess:
        return 0.0


def cpu_by_role(settings: Settings, workers: list[subprocess.Popen], cleaners: int) -> dict[str, float]:
    """CPU seconds used so far by each role of the pipeline; `workers` are the cleaners, then the sink."""
    return {
        "cleaners": sum(cpu_seconds(worker.pid) for worker in workers[:cleaners]),
        "index sink": sum(cpu_seconds(worker.pid) for worker in workers[cleaners:]),
        "Kafka": cpu_seconds(processes.running_pid(settings, "kafka")),
        "Elasticsearch": cpu_seconds(processes.running_pid(settings, "elasticsearch")),
    }


def extract_only(page: PageFetched) -> object:
    # The extraction `clean_page` asks of trafilatura, with the same options, and nothing else.
    return trafilatura.bare_extraction(
        page.html,
        url=str(page.final_url),
        with_metadata=True,
        include_comments=False,
        include_tables=True,
        include_links=True,
        date_extraction_params={"extensive_search": False, "original_date": True},
    )


def accepted_or_rejected(page: PageFetched) -> object:
    try:
        return clean_page(page)
    except PageRejected as exc:
        return exc


def commit_group_at_end(settings: Settings, group: str, topic: topics.Topic) -> None:
    """Start `group` at the topic's current end: it will read only what is published from now on."""
    consumer = bus.make_consumer(settings, group)
    try:
        partitions = consumer.list_topics(topic.name, timeout=10).topics[topic.name].partitions
        ends = [consumer.get_watermark_offsets(TopicPartition(topic.name, p), timeout=10)[1] for p in partitions]
        consumer.commit(
            offsets=[TopicPartition(topic.name, p, end) for p, end in zip(partitions, ends)], asynchronous=False
        )
    finally:
        consumer.close()


def searchable(es: Elasticsearch, alias: str, crawl_id: str) -> int:
    return es.count(index=alias, query={"term": {"crawl_id": crawl_id}})["count"]


def indexed(es: Elasticsearch, alias: str, crawl_id: str) -> int:
    """The crawl's documents in the alias, made searchable now rather than at the next periodic refresh."""
    es.indices.refresh(index=alias)
    return searchable(es, alias, crawl_id)


def wait_for(check: Callable[[], bool], what: str, timeout: float, workers: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if any(worker.poll() is not None for worker in workers):
            raise RuntimeError(f"a worker exited while waiting for {what}: see its log")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(POLL_S)


def publish_all(producer: Producer, pages: list[PageFetched]) -> None:
    for page in pages:
        bus.publish(producer, topics.PAGES_RAW, page)
    bus.flush_or_raise(producer)


class FirstSeen(threading.Thread):
    """Searches the alias for a crawl's documents until stopped; remembers when each id was first found."""

    def __init__(self, es: Elasticsearch, alias: str, crawl_id: str) -> None:
        super().__init__(name="first-seen", daemon=True)
        self._es, self._alias, self._crawl_id = es, alias, crawl_id
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            hits = self._es.search(
                index=self._alias,
                query={"bool": {"filter": [{"term": {"crawl_id": self._crawl_id}}]}},
                source=False,
                size=10_000,
            )["hits"]["hits"]
            now = time.monotonic()
            for hit in hits:
                self.seen.setdefault(hit["_id"], now)
            self.stop.wait(POLL_S)


def start_worker(settings: Settings, command: str, overrides: list[str], log_file: IO[bytes]) -> subprocess.Popen:
    sets = [arg for override in overrides for arg in ("--set", override)]
    return subprocess.Popen(
        [sys.executable, "-m", "ctrlgpt.cli", "--set", "log_level=WARNING", *sets, command],
        cwd=REPO_ROOT,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def remove_bench_state(settings: Settings, es: Elasticsearch, alias: str, groups: list[str], cleaner_app: str) -> None:
    es.options(ignore_status=404).indices.delete(index=PageIndexSink(es_url=settings.es_url, alias=alias).first_index)
    es.options(ignore_status=404).indices.delete_index_template(name=f"{alias}-pages")
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    # The bench cleaner app's own topics: its internal fingerprinted topic and its table's changelog.
    own_topics = [name for name in admin.list_topics(timeout=30).topics if name.startswith(f"{cleaner_app}-")]
    for topic, future in (admin.delete_topics(own_topics, request_timeout=30) if own_topics else {}).items():
        try:
            future.result()
        except Exception as exc:
            print(f"  (topic {topic} not deleted: {exc})")
    for group, future in admin.delete_consumer_groups(groups, request_timeout=30).items():
        try:
            future.result()
        except Exception as exc:
            print(f"  (consumer group {group} not deleted: {exc})")


@dataclass(frozen=True)
class Round:
    """One throughput round: the references and the pipeline, measured back to back on one fresh corpus."""

    pages: int
    accepted: tuple[bool, ...]
    extraction: Timing
    cleaning: Timing
    pipeline_s: float
    cpu_used: dict[str, float]

    def per_cpu_second(self, cpu_s: float) -> float:
        return rate(self.pages, cpu_s)

    @property
    def reference_cpu(self) -> float:
        return self.per_cpu_second(self.extraction.cpu_s)

    @property
    def per_cleaner_core(self) -> float:
        """The goal's measure: pages per CPU-second of the cleaner processes, as a multiple of (i)'s."""
        return self.per_cpu_second(self.cpu_used["cleaners"]) / self.reference_cpu


def run(args: argparse.Namespace) -> Report:
    settings = Settings()
    cores = os.cpu_count() or 1
    figures = Report()
    run_id = uuid.uuid4().hex[:8]
    print(f"ingest benchmark {run_id}: {describe_machine()}", flush=True)
    articles = load_articles()
    figures.add("machine", describe_machine())

    alias = f"ctrlgpt-bench-{run_id}"
    cleaner_app = f"bench-cleaner-{run_id}"
    sink_group = f"bench-index-{run_id}"
    es = Elasticsearch(settings.es_url, request_timeout=60)
    workers: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="ctrlgpt-bench-") as scratch:
        log_path = Path(scratch) / "workers.log"
        try:
            bus.ensure_topics(settings, [topics.PAGES_RAW, topics.PAGES_CLEAN, topics.dead_letter_topic("clean")])
            commit_group_at_end(settings, cleaner_app, topics.PAGES_RAW)
            commit_group_at_end(settings, sink_group, topics.PAGES_CLEAN)
            sink = PageIndexSink(es_url=settings.es_url, alias=alias)
            sink.setup()
            sink.close()
            with log_path.open("wb") as log_file:
                for number in range(args.cleaners):
                    # A data directory each: faust keeps a worker's local state there.
                    data_dir = f"data_dir={scratch}/cleaner-{number}"
                    workers.append(
                        start_worker(settings, "cleaner", [f"cleaner_app_id={cleaner_app}", data_dir], log_file)
                    )
                workers.append(
                    start_worker(settings, "index-sink", [f"es_index={alias}", f"es_sink_group={sink_group}"], log_file)
                )
                figures.add("pipeline workers", f"{args.cleaners} cleaner process(es) + 1 index sink")
                warm_up(settings, es, alias, articles, run_id, workers)
                rounds = []
                for number in range(args.rounds):
                    corpus = build_corpus(articles, args.pages, seed=args.seed + number)
                    host, crawl_id = f"bench-{run_id}-{number}.example.com", f"bench-{run_id}-{number}"
                    pages = [fetched(page, host, crawl_id) for page in corpus]
                    rounds.append(throughput(settings, es, alias, pages, workers, number, args.slice_pages))
                report_throughput(figures, rounds, cores)
                kept_corpus = [page for page, accepted in zip(corpus, rounds[-1].accepted) if accepted]
                latency_pages = [
                    fetched(kept_corpus[n % len(kept_corpus)], host, f"{crawl_id}-latency", prefix=f"/latency/{n}")
                    for n in range(int(args.rate * args.seconds))
                ]
                latency(settings, es, alias, latency_pages, args, workers, figures)
        except Exception:
            print(f"workers' log ({log_path}):\n{log_path.read_text(errors='replace')[-5000:]}", file=sys.stderr)
            raise
        finally:
            stop_workers(workers)
            remove_bench_state(settings, es, alias, [cleaner_app, sink_group], cleaner_app)
            es.close()
    return figures


def warm_up(
    settings: Settings, es: Elasticsearch, alias: str, articles: list, run_id: str, workers: list[subprocess.Popen]
) -> None:
    """One page through first: the workers have joined their groups and the sink its alias before any clock starts."""
    page = fetched(build_corpus(articles, 1)[0], f"bench-{run_id}-warm-up.example.com", f"bench-{run_id}-warm-up")
    publish_all(bus.make_producer(settings), [page])
    wait_for(lambda: searchable(es, alias, page.crawl_id) == 1, "the warm-up page", READY_TIMEOUT_S, workers)


def throughput(
    settings: Settings,
    es: Elasticsearch,
    alias: str,
    pages: list[PageFetched],
    workers: list[subprocess.Popen],
    number: int,
    slice_pages: int,
) -> Round:
    """(i), (ii) and the pipeline on this round's pages, a slice at a time, the three in turn on each slice.

    The machine's speed drifts by a tenth and more within a minute (docs/ingest.md): a reference measured
    a minute before the pipeline can be 30 % off. Alternating slices puts the three within seconds of each
    other, and the sums over slices compare like with like."""
    for page in pages[:WARM_UP_PAGES]:  # imports and caches of both references, untimed
        extract_only(page)
        accepted_or_rejected(page)
    cleaners = len(workers) - 1
    extraction = cleaning = Timing(0.0, 0.0)
    accepted: list[bool] = []
    pipeline_s = 0.0
    cpu_used = dict.fromkeys(cpu_by_role(settings, workers, cleaners), 0.0)
    producer = bus.make_producer(settings)  # one for the round, connected: a producer's start is not the pipeline's
    producer.list_topics(topics.PAGES_RAW.name, timeout=10)
    for low in range(0, len(pages), slice_pages):
        part = pages[low : low + slice_pages]
        extraction += time_each(part, extract_only)
        outcomes: list[object] = []
        cleaning += time_each(part, lambda page: outcomes.append(accepted_or_rejected(page)))
        accepted.extend(not isinstance(outcome, PageRejected) for outcome in outcomes)
        cpu_before = cpu_by_role(settings, workers, cleaners)
        began = time.monotonic()
        publish_all(producer, part)
        wait_for(
            lambda: indexed(es, alias, part[0].crawl_id) >= sum(accepted), "every accepted page indexed", 3600, workers
        )
        pipeline_s += time.monotonic() - began
        for role, used in cpu_by_role(settings, workers, cleaners).items():
            cpu_used[role] += used - cpu_before[role]
    measured = Round(len(pages), tuple(accepted), extraction, cleaning, pipeline_s, cpu_used)
    print(
        f"  round {number + 1}: (i) {1000 * extraction.cpu_s / len(pages):.2f} ms a page, pipeline "
        f"{rate(len(pages), pipeline_s):.1f} pages/s, cleaners {1000 * cpu_used['cleaners'] / len(pages):.2f} ms "
        f"a page = {measured.per_cleaner_core:.2f}x (i) per CPU-second",
        flush=True,
    )
    return measured


def report_throughput(figures: Report, rounds: list[Round], cores: int) -> None:
    """Each figure as the median of the rounds; the goal's ratio with every round's value."""
    first = rounds[0]
    figures.add(
        "corpus",
        f"{first.pages} pages a round, {len(rounds)} rounds (a fresh seed each), "
        f"{sum(first.accepted)} of {first.pages} accepted in the first",
    )

    def median_of(value: Callable[[Round], float]) -> float:
        return median(value(one) for one in rounds)

    reference = median_of(lambda one: rate(one.pages, one.extraction.wall_s))
    figures.add(
        "(i) trafilatura extraction alone, 1 process",
        f"{reference:.1f} pages/s; {median_of(lambda one: one.reference_cpu):.1f} pages per CPU-second "
        f"({median_of(lambda one: 1000 * one.extraction.cpu_s / one.pages):.2f} ms a page)",
    )
    figures.add(
        "(ii) streams.cleaning.clean_page alone, 1 process",
        f"{median_of(lambda one: rate(one.pages, one.cleaning.wall_s)):.1f} pages/s; "
        f"{median_of(lambda one: one.extraction.cpu_s / one.cleaning.cpu_s):.2f}x (i) per CPU-second",
    )
    pipeline = median_of(lambda one: rate(one.pages, one.pipeline_s))
    figures.add("(iii) pipeline: publish -> clean -> indexed, searchable", f"{pipeline:.1f} pages/s")
    figures.add("(iii) / (i)", f"{pipeline / reference:.2f}x the library's single-process rate")
    figures.add("(iii) / (i), per core of the machine", f"{pipeline / cores / reference:.2f}x ({cores} cores)")
    figures.add(
        "(iii) CPU per page",
        ", ".join(
            f"{role} {median_of(lambda one: 1000 * one.cpu_used[role] / one.pages):.2f} ms" for role in first.cpu_used
        ),
    )
    ratios = [one.per_cleaner_core for one in rounds]
    figures.add(
        "(iii) per cleaner core: pages per CPU-second of the cleaner processes",
        f"**{median(ratios):.2f}x (i)** (goal >= 0.8x); rounds " + ", ".join(f"{ratio:.2f}" for ratio in ratios),
        per_cleaner_core=median(ratios),
    )
    figures.add(
        "(iii) per core of the whole pipeline (cleaners + sink + Kafka + Elasticsearch)",
        f"{median_of(lambda one: one.per_cpu_second(sum(one.cpu_used.values())) / one.reference_cpu):.2f}x (i)",
    )


def latency(
    settings: Settings,
    es: Elasticsearch,
    alias: str,
    pages: list[PageFetched],
    args: argparse.Namespace,
    workers: list[subprocess.Popen],
    figures: Report,
) -> None:
    watcher = FirstSeen(es, alias, pages[0].crawl_id)
    watcher.start()
    producer = bus.make_producer(settings, **{"linger.ms": 0})
    sent: dict[str, float] = {}
    began = time.monotonic()
    for number, page in enumerate(pages):
        pause = began + number / args.rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        sent[document_id(str(page.final_url))] = time.monotonic()
        bus.publish(producer, topics.PAGES_RAW, page)
    bus.flush_or_raise(producer)
    try:
        wait_for(lambda: len(watcher.seen) >= len(pages), "every latency page searchable", 600, workers)
    finally:
        watcher.stop.set()
        watcher.join()
    delays = [watcher.seen[doc_id] - at for doc_id, at in sent.items()]
    figures.add(
        f"(iv) crawl-to-searchable at {args.rate:g} pages/s for {args.seconds:g} s",
        f"p50 {percentile(delays, 50):.2f} s, p99 {percentile(delays, 99):.2f} s, "
        f"max {max(delays):.2f} s ({len(delays)} pages)",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=2000, help="Corpus size (default 2000).")
    parser.add_argument("--seed", type=int, default=2024, help="Corpus seed of the first round (default 2024).")
    parser.add_argument(
        "--slice-pages",
        type=int,
        default=400,
        help="Pages per slice: a round measures (i), (ii) and the pipeline on each slice in turn (default 400).",
    )
    # The machine's other work moves a single round's ratio by a tenth either way (docs/ingest.md).
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="Throughput rounds, each on a fresh corpus; figures are medians (default 3).",
    )
    # Kafka, Elasticsearch and the index sink share the machine: on 2 cores one cleaner cleaned more pages
    # per second than two (docs/ingest.md, "Benchmark"), so one core is left to them.
    parser.add_argument(
        "--cleaners",
        type=int,
        default=max(1, (os.cpu_count() or 1) - 1),
        help="Cleaner worker processes (default: nproc - 1, at least 1).",
    )
    parser.add_argument(
        "--rate", type=float, default=20.0, help="Publish rate of the latency run, pages/s (default 20)."
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="Length of the latency run (default 30).")
    args = parser.parse_args()
    figures = run(args)
    print(f"\nIngest benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(figures.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
