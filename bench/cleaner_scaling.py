"""Cleaner scaling benchmark: clean-and-index pages per second with 1, 2 and 3 cleaner workers, and the CPU
per page of each process; prints figures.

    .venv/bin/python bench/cleaner_scaling.py [--configs 1x1,1x3,2x3,3x3] [--rounds 3] [--pages 600] [--slice-pages 200]

Needs the local services (`ctrlgpt services up`). A configuration `WxS` is W `ctrlgpt cleaner` processes
sharing S near-duplicate shards (`near_duplicate_shards`; `1x1` is the layout from before sharding, one
lookup process), a faust app id of their own, plus one `ctrlgpt index-sink` into a throwaway alias. Each
configuration starts its workers, sends one page through them (start-up not counted), then goes through a
fresh seeded corpus (bench/ingest_corpus.py, the same seed for every configuration) a slice at a time:
on each slice, the reference (trafilatura's extraction alone, one process, as bench/ingest.py) and then the
pipeline (publish to `ctrlgpt.pages.raw` until every accepted page is searchable), back to back, so the
machine's drift hits both alike. The configurations take turns, `--rounds` times (round n uses seed
`--seed + n` for all of them). Per configuration and round it prints pages/s, the reference's rate, the CPU
per page of each cleaner process, the sink, Kafka and Elasticsearch, the near duplicates the pipeline
marked, whether they are the same pages naming the same originals as the first configuration's on the same
corpus (pages published together are in flight together: of a near pair either may be the original, so the
pairs are compared too), and the load average before and after; then each configuration's medians. The alias, groups and the
cleaner apps' topics are removed after each.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from urllib.parse import urlsplit

from elasticsearch import Elasticsearch
from ingest import (
    Timing,
    commit_group_at_end,
    cpu_seconds,
    extract_only,
    fetched,
    indexed,
    publish_all,
    rate,
    remove_bench_state,
    start_worker,
    stop_workers,
    time_each,
    wait_for,
    warm_up,
)
from ingest_corpus import build_corpus
from machine import describe as describe_machine
from report import Report

from consumers.search_index import PageIndexSink
from ctrlgpt.settings import Settings
from deploy import processes
from deploy.demo_site import load_articles
from streams import bus, topics
from streams.cleaning import PageRejected, clean_page

# A slice takes seconds; a page that never arrives must end the run with the workers' log, not hang it.
SLICE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Measured:
    workers: int
    shards: int
    pages: int
    reference: Timing
    pipeline_s: float
    cpu_s: dict[str, float]
    verdicts: frozenset[tuple[str, str]]  # (page path, original's path) of the near duplicates marked
    load_before: float
    load_after: float

    @property
    def pages_per_s(self) -> float:
        return rate(self.pages, self.pipeline_s)

    @property
    def reference_ms(self) -> float:
        return 1000 * self.reference.cpu_s / self.pages

    def cpu_ms(self, role: str) -> float:
        return 1000 * self.cpu_s[role] / self.pages

    @property
    def cleaner_ms(self) -> list[float]:
        return [self.cpu_ms(role) for role in self.cpu_s if role.startswith("cleaner")]


def accepted(page: object) -> bool:
    try:
        clean_page(page)
    except PageRejected:
        return False
    return True


def near_duplicates(es: Elasticsearch, alias: str) -> frozenset[tuple[str, str]]:
    hits = es.search(
        index=alias, query={"exists": {"field": "near_duplicate_of"}}, source=["url", "near_duplicate_of"], size=10_000
    )["hits"]["hits"]
    return frozenset(
        (urlsplit(hit["_source"]["url"]).path, urlsplit(hit["_source"]["near_duplicate_of"]).path) for hit in hits
    )


def measure(
    settings: Settings, es: Elasticsearch, workers: int, shards: int, seed: int, args: argparse.Namespace
) -> Measured:
    run_id = uuid.uuid4().hex[:8]
    alias, cleaner_app, sink_group = f"ctrlgpt-bench-{run_id}", f"bench-cleaner-{run_id}", f"bench-index-{run_id}"
    articles = load_articles()
    corpus = build_corpus(articles, args.pages, seed=seed)
    host, crawl_id = f"bench-{run_id}.example.com", f"bench-{run_id}"
    pages = [fetched(page, host, crawl_id) for page in corpus]
    kept = [accepted(page) for page in pages]  # what the pipeline will index, found untimed
    processes_: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="ctrlgpt-bench-") as scratch:
        log_path = Path(scratch) / "workers.log"
        try:
            commit_group_at_end(settings, cleaner_app, topics.PAGES_RAW)
            commit_group_at_end(settings, sink_group, topics.PAGES_CLEAN)
            sink = PageIndexSink(es_url=settings.es_url, alias=alias)
            sink.setup()
            sink.close()
            with log_path.open("wb") as log_file:
                for number in range(workers):
                    overrides = [
                        f"cleaner_app_id={cleaner_app}",
                        f"data_dir={scratch}/cleaner-{number}",
                        f"near_duplicate_shards={shards}",
                    ]
                    processes_.append(start_worker(settings, "cleaner", overrides, log_file))
                processes_.append(
                    start_worker(settings, "index-sink", [f"es_index={alias}", f"es_sink_group={sink_group}"], log_file)
                )
                warm_up(settings, es, alias, articles, run_id, processes_)
                for page in pages[:20]:  # the reference's imports and caches, untimed
                    extract_only(page)
                producer = bus.make_producer(settings)
                producer.list_topics(topics.PAGES_RAW.name, timeout=10)
                roles = {f"cleaner {n + 1}": proc.pid for n, proc in enumerate(processes_[:-1])}
                roles["index sink"] = processes_[-1].pid
                roles["Kafka"] = processes.running_pid(settings, "kafka")
                roles["Elasticsearch"] = processes.running_pid(settings, "elasticsearch")
                cpu_s = dict.fromkeys(roles, 0.0)
                reference, pipeline_s = Timing(0.0, 0.0), 0.0
                load_before = os.getloadavg()[0]
                for low in range(0, len(pages), args.slice_pages):
                    part = pages[low : low + args.slice_pages]
                    reference += time_each(part, extract_only)
                    target = sum(kept[: low + len(part)])
                    before = {role: cpu_seconds(pid) for role, pid in roles.items()}
                    began = time.monotonic()
                    publish_all(producer, part)
                    wait_for(
                        lambda: indexed(es, alias, crawl_id) >= target, "the slice indexed", SLICE_TIMEOUT_S, processes_
                    )
                    pipeline_s += time.monotonic() - began
                    for role, pid in roles.items():
                        cpu_s[role] += cpu_seconds(pid) - before[role]
                load_after = os.getloadavg()[0]
                es.indices.refresh(index=alias)
                verdicts = near_duplicates(es, alias)
        except Exception:
            print(f"workers' log ({log_path}):\n{log_path.read_text(errors='replace')[-5000:]}", file=sys.stderr)
            raise
        finally:
            stop_workers(processes_)
            remove_bench_state(settings, es, alias, [cleaner_app, sink_group], cleaner_app)
    return Measured(workers, shards, len(pages), reference, pipeline_s, cpu_s, verdicts, load_before, load_after)


def describe(one: Measured, first: Measured) -> str:
    cleaners = one.cleaner_ms
    others = ", ".join(f"{role} {one.cpu_ms(role):.2f} ms" for role in one.cpu_s if not role.startswith("cleaner"))
    pairs, first_pairs = ({frozenset(pair) for pair in run.verdicts} for run in (one, first))
    if one.verdicts == first.verdicts:
        same = "the same as"
    elif pairs == first_pairs:
        # Pages of one slice are in flight together: of a near pair, either may be taken for the original.
        same = f"the same pairs ({len(one.verdicts - first.verdicts)} the other way round) as"
    else:
        same = f"other pairs ({sorted(one.verdicts ^ first.verdicts)}) than"
    return (
        f"{one.pages_per_s:.1f} pages/s (reference {rate(one.pages, one.reference.wall_s):.1f}, "
        f"{one.reference_ms:.2f} ms a page); CPU a page: cleaners {sum(cleaners):.2f} ms "
        f"({' + '.join(f'{value:.2f}' for value in cleaners)}) = {sum(cleaners) / one.reference_ms:.2f}x the "
        f"reference, {others}; {len(one.verdicts)} near duplicates, {same} {first.workers}x{first.shards}'s; "
        f"load average {one.load_before:.1f} -> {one.load_after:.1f}"
    )


def summarize(figures: Report, runs: list[Measured]) -> None:
    """A configuration's medians over its rounds: pages/s, and CPU a page as a multiple of the reference's."""
    figures.add(
        f"{runs[0].workers} cleaner(s), {runs[0].shards} shard(s), median of {len(runs)}",
        f"{median(one.pages_per_s for one in runs):.1f} pages/s "
        f"({median(one.pages_per_s / rate(one.pages, one.reference.wall_s) for one in runs):.2f}x the reference's "
        f"rate in the same slices); CPU a page: cleaners {median(sum(one.cleaner_ms) for one in runs):.2f} ms = "
        f"{median(sum(one.cleaner_ms) / one.reference_ms for one in runs):.2f}x the reference "
        f"({median(one.reference_ms for one in runs):.2f} ms), each cleaner process "
        f"{median(median(one.cleaner_ms) for one in runs):.2f} ms; Kafka "
        f"{median(one.cpu_ms('Kafka') for one in runs):.2f} ms, Elasticsearch "
        f"{median(one.cpu_ms('Elasticsearch') for one in runs):.2f} ms, index sink "
        f"{median(one.cpu_ms('index sink') for one in runs):.2f} ms",
        **{f"pages_per_s_{runs[0].workers}x{runs[0].shards}": median(one.pages_per_s for one in runs)},
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="1x1,1x3,2x3,3x3", help="WORKERSxSHARDS, comma-separated.")
    parser.add_argument("--pages", type=int, default=600, help="Corpus size per configuration (default 600).")
    parser.add_argument("--slice-pages", type=int, default=200, help="Pages per slice (default 200).")
    parser.add_argument("--rounds", type=int, default=3, help="Turns of every configuration (default 3).")
    parser.add_argument("--seed", type=int, default=2024, help="Corpus seed of the first round (default 2024).")
    args = parser.parse_args()
    settings = Settings()
    bus.ensure_topics(settings, [topics.PAGES_RAW, topics.PAGES_CLEAN, topics.dead_letter_topic("clean")])
    figures = Report()
    figures.add("machine", describe_machine())
    es = Elasticsearch(settings.es_url, request_timeout=60)
    configs = [tuple(int(part) for part in config.split("x")) for config in args.configs.split(",")]
    runs: dict[tuple[int, ...], list[Measured]] = {config: [] for config in configs}
    try:
        for number in range(args.rounds):
            first = None
            for config in configs:
                one = measure(settings, es, config[0], config[1], args.seed + number, args)
                first = first or one
                runs[config].append(one)
                figures.add(f"round {number + 1}, {config[0]} cleaner(s), {config[1]} shard(s)", describe(one, first))
        for config in configs:
            summarize(figures, runs[config])
    finally:
        es.close()
    print(f"\nCleaner scaling benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(figures.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
