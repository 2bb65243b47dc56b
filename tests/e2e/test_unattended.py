"""Unattended operation: each worker killed with -9 in turn, then the broker, in the middle of a backlog.

The workers run under the supervisor as `ctrlgpt demo` starts them. While pages flow
(raw pages published straight to Kafka, and a crawl of a local site) and passages are
labelled in doccano, the crawler, cleaner, index sink, doccano sink, label bridge,
trainer and API are killed with SIGKILL one after the other; each must be started again
by the supervisor. Then the Kafka broker is killed and started again a minute later while
labels go on being made; more pages follow. At the end every worker runs, every page is in
Elasticsearch exactly once, every passage is in doccano once, and every label made has
exactly one `created` label event.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest
from cleaner_harness import article, html
from crawl_sites import Site, fixed, html_page, serve
from elasticsearch import Elasticsearch, helpers
from faults import kill_service, kill_worker, start_service, wait_restarted

from consumers.doccano_client import DoccanoClient, ensure_sentiment_project
from ctrlgpt import secrets
from ctrlgpt.settings import Settings
from deploy import processes
from deploy.workers import start_workers, stop_workers
from producers.seed import seed_requests
from streams import bus, topics
from streams.records import LabelRecorded, PageFetched
from streams.snapshot import read_snapshot

pytestmark = pytest.mark.e2e

KILL_ORDER = ("crawler", "cleaner", "index-sink", "doccano-sink", "label-bridge", "trainer", "api")
# Texts are seeded by the run too: pages of an earlier run with the same text would be near
# duplicates, which are indexed but never sent to labeling.
RAW_PAGES = 120
LATE_PAGES = 30  # published after the broker came back
SITE_PAGES = 12
LABELS = 30
BROKER_OUTAGE_S = 60


def _site(run: str) -> Site:
    routes = {"/robots.txt": fixed((200, {"Content-Type": "text/plain"}, b"User-agent: *\nAllow: /\n"))}
    links = [f"/article-{i}.html" for i in range(SITE_PAGES)]
    routes["/"] = fixed(html_page(f"Index {run}", *links))
    for i, link in enumerate(links):
        body = html(f"Site article {i} of {run}", article(f"{run}-site-{i}", paragraphs=6)).encode()
        routes[link] = fixed((200, {"Content-Type": "text/html; charset=utf-8"}, body))
    return Site(routes)


def _wait(check, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(1)


class Labeller:
    """Labels passages of this run's pages in doccano, one a second, as a person would through its API."""

    def __init__(self, settings: Settings, hosts: tuple[str, ...]) -> None:
        self.settings, self.hosts = settings, hosts
        self.made: dict[int, str] = {}  # example id -> sentiment
        self.project_id = 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        password = secrets.load_or_create(self.settings.secrets_file).doccano_password
        with DoccanoClient(self.settings.doccano_url, self.settings.doccano_username, password) as client:
            client.login()
            project = ensure_sentiment_project(client, self.settings.doccano_project)
            self.project_id = project.id
            pending: list[int] = []  # this run's passages not labelled yet, read in one pass
            while len(self.made) < LABELS and not self.stop.wait(1.0):
                try:
                    if not pending:
                        pending = [
                            example["id"]
                            for example in client.iter_examples(project.id, confirmed=False)
                            if example["id"] not in self.made
                            and any(host in ((example.get("meta") or {}).get("url") or "") for host in self.hosts)
                        ]
                        continue
                    example_id = pending.pop(0)
                    sentiment = ("positive", "negative")[len(self.made) % 2]
                    client.add_category(project.id, example_id, project.label_ids[sentiment])
                    client.confirm_example(project.id, example_id)
                    self.made[example_id] = sentiment
                except Exception as exc:
                    self.errors.append(repr(exc))


def _created_label_events(settings: Settings, project_id: int, examples: set[int]) -> Counter[int]:
    created: Counter[int] = Counter()
    for event in read_snapshot(settings, topics.LABELS).records:
        if not isinstance(event, LabelRecorded) or event.action != "created":
            continue
        parts = event.label_id.split(":")
        if len(parts) == 4 and parts[0] == "doccano" and parts[1] == str(project_id) and int(parts[2]) in examples:
            created[int(parts[2])] += 1
    return created


def test_each_worker_killed_in_turn_is_restarted_and_nothing_is_lost_or_doubled(settings: Settings) -> None:
    run = uuid.uuid4().hex[:8]
    raw_host = f"unattended-{run}.example.com"
    # No training run: the trainer is killed and must come back, but a run would take minutes.
    quiet = settings.model_copy(update={"train_min_labels": 100_000, "train_interval_s": 0.0})
    stop_workers(settings)
    start_workers(quiet)
    try:
        _wait(lambda: all(processes.running_pid(settings, w) for w in KILL_ORDER), "every worker to run", 120)
        with serve(_site(run)) as (site,):
            site_host = site.url.split("//")[1].rstrip("/")
            producer = bus.make_producer(settings)
            raw_urls = [f"https://{raw_host}/page-{i}.html" for i in range(RAW_PAGES + LATE_PAGES)]

            def publish_raw(numbers: range) -> None:
                for i in numbers:
                    url = raw_urls[i]
                    page = html(f"Page {i} {run}", article(f"{run}-raw-{i}", paragraphs=6))
                    bus.publish(
                        producer,
                        topics.PAGES_RAW,
                        PageFetched(url=url, final_url=url, crawl_id=run, status=200, html=page),
                    )

            publish_raw(range(RAW_PAGES))
            for request in seed_requests(
                [site.url], crawl_id=run, max_depth=1, allowed_domains=[], fetch_mode="browser"
            ):
                bus.publish(producer, topics.CRAWL_REQUESTS, request)
            bus.flush_or_raise(producer)
            labeller = Labeller(settings, (raw_host, site_host))
            labeller.thread.start()

            for worker in KILL_ORDER:
                wait_restarted(settings, worker, kill_worker(settings, worker), timeout=30)
                time.sleep(3)

            kill_service(settings, "kafka")
            time.sleep(BROKER_OUTAGE_S)  # labels go on being made meanwhile: doccano needs no Kafka
            start_service(settings, "kafka")
            publish_raw(range(RAW_PAGES, RAW_PAGES + LATE_PAGES))
            bus.flush_or_raise(producer)

            site_urls = [f"{site.url}article-{i}.html" for i in range(SITE_PAGES)]
            expected = set(raw_urls) | set(site_urls)
            es = Elasticsearch(settings.es_url, request_timeout=60)

            def indexed() -> Counter[str]:
                if not es.indices.exists(index=settings.es_index):  # the index sink makes it at its first start
                    return Counter()
                es.indices.refresh(index=settings.es_index)
                query = {"query": {"terms": {"url": sorted(expected)}}}
                return Counter(hit["_source"]["url"] for hit in helpers.scan(es, index=settings.es_index, query=query))

            _wait(lambda: set(indexed()) == expected, "every page in Elasticsearch", 600)
            _wait(lambda: len(labeller.made) >= LABELS, f"{LABELS} labels in doccano ({labeller.errors[-3:]})", 300)
            labeller.stop.set()
            labeller.thread.join(10)
            made = set(labeller.made)
            _wait(
                lambda: set(_created_label_events(settings, labeller.project_id, made)) == made,
                "a label event for every label made",
                180,
            )
            time.sleep(5)  # a duplicate published late would show now

            documents = indexed()
            assert set(documents) == expected
            assert [url for url, n in documents.items() if n != 1] == []
            created = _created_label_events(settings, labeller.project_id, made)
            assert {example: n for example, n in created.items() if n != 1} == {}
            assert set(created) == made
            password = secrets.load_or_create(settings.secrets_file).doccano_password
            with DoccanoClient(settings.doccano_url, settings.doccano_username, password) as client:
                client.login()
                passages = Counter(
                    ((example.get("meta") or {}).get("url"), example["text"])
                    for example in client.iter_examples(labeller.project_id)
                    if (example.get("meta") or {}).get("url") in expected
                )
            assert passages and [key for key, n in passages.items() if n != 1] == []
            _wait(
                lambda: all(processes.running_pid(settings, w) for w in KILL_ORDER),
                "every worker to run at the end",
                60,
            )
    finally:
        stop_workers(settings)
