"""Soak: the whole loop for a long while, workers killed at random; counts what was lost or duplicated.

    .venv/bin/python bench/soak.py [--minutes 30] [--kill-every 180] [--wave-pages 40] [--wave-every 150]
                                   [--label-burst 25] [--label-every 240] [--fetch-mode browser] [--seed 0]

Needs the local services (`ctrlgpt services up`), on a data directory of its own
(`CTRLGPT_DATA_DIR`): its articles are recombined from the demo's 30, so the pages of an earlier
soak on the same stack make every new one a near duplicate, which is indexed but never sent to
labeling (a second run there labels nothing). The bench stops the workers that run,
starts them again under the supervisor with its training settings (small runs, so that
several finish within the soak), and serves a site of its own on a free port: every
`--wave-every` seconds a new wave of `--wave-pages` generated articles (bench/ingest_corpus.py)
appears under `/w<k>/` and is seeded to the crawler. Every `--label-every` seconds a burst of
`--label-burst` passages of those articles is labelled in doccano through its REST API (as the
demo's scripted annotator does, from the articles' answer key), then labels stop for a while,
so that label-driven training runs start. Every `--kill-every` seconds (+/- a third, at random)
one worker (crawler, cleaner, index sink, doccano sink, label bridge, trainer or API) is killed
with SIGKILL; the supervisor must bring it back. A client asks the API for a generation every
10 s throughout.

At the end the waves and labels stop, the pipeline drains (`--drain-minutes` at most), and the
bench counts against Kafka, Elasticsearch and doccano:
- pages: every article served is in the index exactly once, or in a dead-letter topic with a
  reason; lost = neither. Also how many were cleaned more than once (clean-page events per URL)
  and written to the index more than once (the document's `_version`): the at-least-once repeats
  that idempotent writes absorb;
- labels: every label made has exactly one `created` label event; lost and duplicated counted;
- restarts: each kill, and the seconds until the worker ran again; training runs ended,
  versions promoted, generations answered and failed;
- memory (RSS) of each worker and service near the start and at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import httpx
import psutil
from elasticsearch import Elasticsearch, helpers
from ingest_corpus import BenchPage, build_corpus
from machine import describe as describe_machine
from report import Report

from consumers.doccano_client import DoccanoClient, ensure_sentiment_project
from consumers.search_index import document_id
from ctrlgpt import secrets
from ctrlgpt.settings import Settings
from deploy import processes, services
from deploy.demo_site import load_articles
from deploy.scripted_annotator import annotator_session, normalise_url
from deploy.workers import WORKERS, start_workers, stop_workers
from producers.seed import seed_requests
from streams import bus, topics
from streams.records import DeadLetter, LabelRecorded, PageCleaned
from streams.snapshot import read_snapshot

KILLABLE = ("crawler", "cleaner", "index-sink", "doccano-sink", "label-bridge", "trainer", "api")
RESTART_TIMEOUT_S = 120.0

# Small training runs, so that several start, finish and swap within a soak on two cores.
SOAK_TRAINING = {
    "sft_epochs": 2.0,
    "reward_epochs": 2.0,
    "ppo_episodes": 32,
    "target_sft_epochs": 2.0,
    "train_min_labels": 20,
    "train_quiet_s": 20.0,
    "train_max_new_pages": 120,
}


# ---- accounting (pure) ----------------------------------------------------------------


@dataclass(frozen=True)
class PageTally:
    expected: int
    indexed: int
    dead_lettered: int
    lost: list[str]
    documents_per_url_over_one: int
    cleaned_more_than_once: int
    written_more_than_once: int


def tally_pages(
    expected_urls: Iterable[str],
    index_versions: Mapping[str, int],
    clean_events: Counter[str],
    dead_lettered_urls: set[str],
    documents: Counter[str],
) -> PageTally:
    """`index_versions`: URL -> the `_version` of its document (absent: not indexed); `documents`: URL -> how
    many documents of the index carry it."""
    expected = sorted(set(expected_urls))
    indexed = [url for url in expected if url in index_versions]
    dead = [url for url in expected if url not in index_versions and url in dead_lettered_urls]
    lost = [url for url in expected if url not in index_versions and url not in dead_lettered_urls]
    return PageTally(
        expected=len(expected),
        indexed=len(indexed),
        dead_lettered=len(dead),
        lost=lost,
        documents_per_url_over_one=sum(1 for url in expected if documents[url] > 1),
        cleaned_more_than_once=sum(1 for url in expected if clean_events[url] > 1),
        written_more_than_once=sum(1 for url in indexed if index_versions[url] > 1),
    )


@dataclass(frozen=True)
class LabelTally:
    made: int
    published: int
    lost: list[int]
    duplicated: list[int]
    wrong: list[int]


def example_of(label_id: str) -> tuple[int, int] | None:
    """(project id, example id) of a doccano label id `doccano:<project>:<example>:<annotation>`."""
    parts = label_id.split(":")
    if len(parts) != 4 or parts[0] != "doccano":
        return None
    try:
        return int(parts[1]), int(parts[2])
    except ValueError:
        return None


def tally_labels(project_id: int, made: Mapping[int, str], events: Iterable[LabelRecorded]) -> LabelTally:
    """`made`: example id -> the sentiment given; each must have exactly one `created` event saying so."""
    created: Counter[int] = Counter()
    said: dict[int, set[str]] = {}
    for event in events:
        where = example_of(event.label_id)
        if where is None or where[0] != project_id or event.action != "created" or where[1] not in made:
            continue
        created[where[1]] += 1
        said.setdefault(where[1], set()).add(getattr(event.label, "sentiment", ""))
    return LabelTally(
        made=len(made),
        published=sum(1 for example in made if created[example] >= 1),
        lost=sorted(example for example in made if created[example] == 0),
        duplicated=sorted(example for example in made if created[example] > 1),
        wrong=sorted(
            example for example, sentiment in made.items() if created[example] and said[example] != {sentiment}
        ),
    )


# ---- the site -----------------------------------------------------------------------------


class SoakSite:
    """Waves of generated articles on one local origin; a wave's index page links its articles."""

    def __init__(self, seed: int) -> None:
        self._articles = load_articles()
        self._seed = seed
        self._pages: dict[str, BenchPage] = {}
        self._waves: dict[int, list[str]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", _free_port()), self._handler())
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def add_wave(self, wave: int, size: int) -> str:
        """Publish wave `wave`'s articles; returns its index page's URL."""
        pages = build_corpus(self._articles, size, seed=self._seed * 1000 + wave)
        with self._lock:
            paths = []
            for page in pages:
                path = f"/w{wave}{page.path}"
                self._pages[path] = page
                paths.append(path)
            self._waves[wave] = paths
        return f"{self.url}w{wave}/"

    def article_urls(self) -> dict[str, str]:
        """Every article URL served so far -> its sentiment (the answer key)."""
        with self._lock:
            return {normalise_url(self.url.rstrip("/") + path): page.sentiment for path, page in self._pages.items()}

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                with site._lock:
                    page = site._pages.get(path)
                    wave = path.strip("/")[1:] if path.startswith("/w") and path.endswith("/") else None
                    index = site._waves.get(int(wave)) if wave and wave.isdigit() else None
                if path == "/robots.txt":
                    self._send(HTTPStatus.OK, "User-agent: *\nAllow: /\n", "text/plain")
                elif page is not None:
                    self._send(HTTPStatus.OK, page.html)
                elif index is not None:
                    links = "".join(f'<li><a href="{p}">{site._pages[p].title}</a></li>' for p in index)
                    self._send(
                        HTTPStatus.OK,
                        f"<html><head><title>Wave {wave}</title></head><body><ul>{links}</ul></body></html>",
                    )
                else:
                    self._send(HTTPStatus.NOT_FOUND, "not found")

            def _send(self, status: HTTPStatus, body: str, content_type: str = "text/html; charset=utf-8") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---- the activities -----------------------------------------------------------------------


@dataclass
class Kill:
    worker: str
    pid: int
    at_s: float
    back_after_s: float | None = None  # None: not running again within RESTART_TIMEOUT_S


@dataclass
class SoakLog:
    kills: list[Kill] = field(default_factory=list)
    labels: dict[int, str] = field(default_factory=dict)  # example id -> sentiment given
    waves: int = 0
    generations_ok: int = 0
    generations_failed: int = 0
    errors: list[str] = field(default_factory=list)


def kill_one(settings: Settings, rng: random.Random, began: float) -> Kill | None:
    worker = rng.choice(KILLABLE)
    pid = processes.running_pid(settings, worker)
    if pid is None:
        return None
    os.kill(pid, signal.SIGKILL)
    kill = Kill(worker, pid, round(time.monotonic() - began, 1))
    killed_at = time.monotonic()
    while time.monotonic() - killed_at < RESTART_TIMEOUT_S:
        again = processes.running_pid(settings, worker)
        if again is not None and again != pid:
            kill.back_after_s = round(time.monotonic() - killed_at, 1)
            break
        time.sleep(0.2)
    print(f"  killed {worker} (pid {pid}) at {kill.at_s:.0f}s; back after {kill.back_after_s}s", flush=True)
    return kill


def label_burst(settings: Settings, answers: Mapping[str, str], burst: int, done: dict[int, str]) -> int:
    """Label up to `burst` unlabelled passages of the soak's articles as the scripted annotator does."""
    labelled = 0
    with annotator_session(settings) as (annotator, project):
        for example in list(annotator.iter_examples(project.id, confirmed=False)):
            if labelled >= burst:
                break
            url = (example.get("meta") or {}).get("url")
            sentiment = answers.get(normalise_url(url)) if url else None
            if sentiment is None or example["id"] in done or annotator.categories(project.id, example["id"]):
                continue
            annotator.add_category(project.id, example["id"], project.label_ids[sentiment])
            annotator.confirm_example(project.id, example["id"])
            done[example["id"]] = sentiment
            labelled += 1
    return labelled


def ask_for_generations(settings: Settings, log: SoakLog, stop: threading.Event) -> None:
    with httpx.Client(timeout=60) as client:
        while not stop.wait(10):
            try:
                answer = client.post(
                    f"{settings.api_url}/v1/generate", json={"prompt": "The harbour", "max_new_tokens": 16}
                )
                if answer.status_code == 200:
                    log.generations_ok += 1
                else:
                    log.generations_failed += 1
            except httpx.HTTPError:
                log.generations_failed += 1


def memory(settings: Settings) -> dict[str, int]:
    """RSS in MiB of each service and worker, with their children (Chromium under the crawler, say)."""
    sizes = {}
    for name in [service.name for service in services.of(settings)] + list(WORKERS):
        pid = processes.running_pid(settings, name)
        if pid is None:
            continue
        try:
            process = psutil.Process(pid)
            tree = [process, *process.children(recursive=True)]
            sizes[name] = sum(p.memory_info().rss for p in tree if p.is_running()) // 2**20
        except psutil.Error:
            continue
    return sizes


# ---- counting at the end --------------------------------------------------------------------


def index_versions(settings: Settings, urls: Iterable[str]) -> dict[str, int]:
    es = Elasticsearch(settings.es_url, request_timeout=60)
    es.indices.refresh(index=settings.es_index)
    by_id = {document_id(url): url for url in urls}
    found = {}
    ids = list(by_id)
    for start in range(0, len(ids), 500):
        answer = es.mget(
            index=settings.es_index, ids=ids[start : start + 500], source=False
        )  # _version comes with every doc
        for doc in answer["docs"]:
            if doc.get("found"):
                found[by_id[doc["_id"]]] = int(doc["_version"])
    return found


def index_documents(settings: Settings, site_url: str) -> Counter[str]:
    """URL -> documents in the index that carry it, for every document of the soak's site."""
    es = Elasticsearch(settings.es_url, request_timeout=60)
    query = {"prefix": {"url": site_url}}
    return Counter(
        normalise_url(hit["_source"]["url"])
        for hit in helpers.scan(es, index=settings.es_index, query={"query": query}, _source=["url"])
    )


def clean_events(settings: Settings, since: datetime) -> Counter[str]:
    return Counter(
        normalise_url(record.url)
        for record in read_snapshot(settings, topics.PAGES_CLEAN).records
        if isinstance(record, PageCleaned) and record.fetched_at >= since
    )


def dead_lettered(settings: Settings, since: datetime) -> set[str]:
    urls = set()
    for stage in ("crawl", "clean", "index"):
        for letter in read_snapshot(settings, topics.dead_letter_topic(stage)).records:
            if isinstance(letter, DeadLetter) and letter.created_at >= since and letter.key:
                urls.add(normalise_url(letter.key))
    return urls


def label_events(settings: Settings, since: datetime) -> list[LabelRecorded]:
    return [
        record
        for record in read_snapshot(settings, topics.LABELS).records
        if isinstance(record, LabelRecorded) and record.created_at >= since
    ]


def training_outcomes(settings: Settings, since: datetime) -> tuple[int, int, int]:
    runs = [r for r in read_snapshot(settings, topics.TRAINING_RUNS).records if r.created_at >= since]
    done = sum(1 for r in runs if r.stage == "done")
    failed = sum(1 for r in runs if r.stage == "failed")
    promoted = sum(
        1
        for u in read_snapshot(settings, topics.MODEL_UPDATES).records
        if u.created_at >= since and u.action == "promoted"
    )
    return done, failed, promoted


# ---- the run ----------------------------------------------------------------------------------


def run(settings: Settings, args: argparse.Namespace) -> Report:
    rng = random.Random(args.seed)
    report = Report()
    print(f"machine: {describe_machine()}", flush=True)
    since = datetime.now(UTC)
    soak_settings = settings.model_copy(update=SOAK_TRAINING)
    stop_workers(settings)
    start_workers(soak_settings)
    processes.wait_until(
        lambda: httpx.get(f"{settings.api_url}/health", timeout=5).status_code == 200, what="the API", timeout=300
    )
    site = SoakSite(args.seed)
    producer = bus.make_producer(settings)
    log = SoakLog()
    stop = threading.Event()
    asker = threading.Thread(target=ask_for_generations, args=(settings, log, stop), daemon=True)
    asker.start()

    began = time.monotonic()
    end = began + args.minutes * 60
    next_wave, next_label, next_kill = began, began + args.label_every / 2, began + args.kill_every
    memory_start: dict[str, int] | None = None
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_wave:
            index = site.add_wave(log.waves, args.wave_pages)
            for request in seed_requests(
                [index],
                crawl_id=f"soak-{uuid.uuid4().hex[:8]}",
                max_depth=1,
                allowed_domains=[],
                fetch_mode=args.fetch_mode,
            ):
                bus.publish(producer, topics.CRAWL_REQUESTS, request)
            bus.flush_or_raise(producer)
            log.waves += 1
            print(f"  wave {log.waves} at {now - began:.0f}s: {args.wave_pages} articles", flush=True)
            next_wave = now + args.wave_every
        if now >= next_label:
            try:
                made = label_burst(settings, site.article_urls(), args.label_burst, log.labels)
                print(f"  labelled {made} passages at {now - began:.0f}s ({len(log.labels)} in all)", flush=True)
            except Exception as exc:
                log.errors.append(f"label burst: {exc}")
            next_label = now + args.label_every
        if now >= next_kill:
            kill = kill_one(settings, rng, began)
            if kill is not None:
                log.kills.append(kill)
            next_kill = now + args.kill_every * rng.uniform(2 / 3, 4 / 3)
        if memory_start is None and now - began > 60:
            memory_start = memory(settings)
        time.sleep(1)

    print("  soak over: draining", flush=True)
    expected = site.article_urls()
    deadline = time.monotonic() + args.drain_minutes * 60
    while True:
        pages = tally_pages(
            expected,
            index_versions(settings, expected),
            clean_events(settings, since),
            dead_lettered(settings, since),
            index_documents(settings, site.url),
        )
        project_id = _sentiment_project_id(settings)
        labels = tally_labels(project_id, log.labels, label_events(settings, since))
        if (not pages.lost and not labels.lost) or time.monotonic() > deadline:
            break
        print(f"  draining: {len(pages.lost)} pages and {len(labels.lost)} labels not there yet", flush=True)
        time.sleep(15)
    stop.set()
    memory_end = memory(settings)
    runs_done, runs_failed, promoted = training_outcomes(settings, since)
    site.stop()

    report.add("machine", describe_machine())
    report.add(
        "soak", f"{args.minutes:.0f} min, {log.waves} waves of {args.wave_pages} articles, fetch mode {args.fetch_mode}"
    )
    report.add(
        "pages served / indexed / dead-lettered / lost",
        f"{pages.expected} / {pages.indexed} / {pages.dead_lettered} / {len(pages.lost)}",
        pages_lost=len(pages.lost),
    )
    report.add("pages with more than one document", str(pages.documents_per_url_over_one))
    report.add(
        "pages cleaned more than once / written to the index more than once (absorbed repeats)",
        f"{pages.cleaned_more_than_once} / {pages.written_more_than_once}",
    )
    report.add(
        "labels made / published / lost / duplicated / wrong",
        f"{labels.made} / {labels.published} / {len(labels.lost)} / {len(labels.duplicated)} / {len(labels.wrong)}",
        labels_lost=len(labels.lost),
        labels_duplicated=len(labels.duplicated),
    )
    restarted = [k for k in log.kills if k.back_after_s is not None]
    report.add(
        "workers killed / back within 10 s / back at all",
        f"{len(log.kills)} / {sum(1 for k in restarted if k.back_after_s <= 10)} / {len(restarted)}",
        kills=len(log.kills),
        not_restarted=len(log.kills) - len(restarted),
    )
    report.add("kills", ", ".join(f"{k.worker}@{k.at_s:.0f}s->{k.back_after_s}s" for k in log.kills) or "none")
    report.add("training runs done / failed, versions promoted", f"{runs_done} / {runs_failed}, {promoted}")
    report.add(
        "generations answered / failed (failures while the API was down count)",
        f"{log.generations_ok} / {log.generations_failed}",
    )
    for name in sorted(set(memory_start or {}) | set(memory_end)):
        report.add(
            f"RSS {name} (MiB, start -> end)", f"{(memory_start or {}).get(name, '-')} -> {memory_end.get(name, '-')}"
        )
    if log.errors:
        report.add("bench errors", "; ".join(log.errors[:5]))
    if pages.lost:
        print(f"lost pages (first 10): {pages.lost[:10]}")
    if labels.lost or labels.duplicated:
        print(f"lost labels: {labels.lost[:10]}, duplicated: {labels.duplicated[:10]}")
    return report


def _sentiment_project_id(settings: Settings) -> int:
    password = secrets.load_or_create(settings.secrets_file).doccano_password
    with DoccanoClient(settings.doccano_url, settings.doccano_username, password) as client:
        client.login()
        return ensure_sentiment_project(client, settings.doccano_project).id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="How long pages and labels flow.")
    parser.add_argument("--kill-every", type=float, default=180.0, help="Mean seconds between two kills.")
    parser.add_argument("--wave-pages", type=int, default=40, help="Articles per wave.")
    parser.add_argument("--wave-every", type=float, default=150.0, help="Seconds between two waves.")
    parser.add_argument("--label-burst", type=int, default=25, help="Passages labelled per burst.")
    parser.add_argument("--label-every", type=float, default=240.0, help="Seconds between two label bursts.")
    parser.add_argument("--fetch-mode", choices=["browser", "http"], default="browser")
    parser.add_argument("--drain-minutes", type=float, default=10.0, help="Longest wait for the pipeline to drain.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    report = run(Settings(), args)
    print()
    print(report.table())


if __name__ == "__main__":
    main()
