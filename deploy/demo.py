"""`ctrlgpt demo`: the whole loop on the local demo site, with progress, ending in a generation.

services -> workers -> seed the demo site -> pages searchable in Elasticsearch ->
passages in doccano -> the scripted annotator labels them -> label events ->
training -> a promoted version served by the API -> a generation from it.

Running it again is safe: services and workers already running are reused, pages
are re-indexed under the same ids, passages already in doccano are not re-imported,
and training runs again only when enough new labels arrived.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from elasticsearch import Elasticsearch

from consumers.doccano_client import DoccanoClient, ensure_sentiment_project
from ctrlgpt import logs, secrets
from ctrlgpt.settings import Settings
from deploy import services
from deploy.demo_console import DemoConsole
from deploy.demo_site import article_url, load_articles
from deploy.processes import wait_until
from deploy.scripted_annotator import annotate
from deploy.workers import start_workers
from producers.seed import seed_requests
from streams import bus, topics
from streams.records import TrainingRunProgressed
from streams.snapshot import read_snapshot


@dataclass(frozen=True)
class LoopReport:
    crawl_id: str
    article_urls: list[str]
    pages_indexed: int
    passages_in_doccano: int
    labelled: int
    model_version: str
    generation: dict[str, Any]  # from the default target's policy (`target_sentiment`)
    generations: dict[str, dict[str, Any]]  # one per target the API serves


def served_version(settings: Settings) -> str | None:
    answer = httpx.get(f"{settings.api_url}/health", timeout=5).json()
    return answer.get("model_version")


def served_versions(settings: Settings) -> dict[str, str | None]:
    """The version the API serves per target (None: none yet)."""
    return httpx.get(f"{settings.api_url}/health", timeout=5).json().get("targets") or {}


def run_ended_since(settings: Settings, since: datetime) -> TrainingRunProgressed | None:
    """The first training run started after `since` to finish (promoted, rejected by the gate, or failed).

    A run already under way at `since` (the trainer's start-up run on what was on Kafka before) is not
    the run on the new labels, however it ends."""
    started: set[str] = set()
    for event in read_snapshot(settings, topics.TRAINING_RUNS).records:
        if event.created_at > since and event.stage == "queued":
            started.add(event.run_id)
        elif event.run_id in started and event.stage in ("done", "failed"):
            return event
    return None


def latest_progress(settings: Settings, since: datetime) -> TrainingRunProgressed | None:
    """The newest progress event of a run started after `since`."""
    started: set[str] = set()
    latest = None
    for event in read_snapshot(settings, topics.TRAINING_RUNS).records:
        if event.created_at > since and event.stage == "queued":
            started.add(event.run_id)
        if event.run_id in started:
            latest = event
    return latest


def model_settled(settings: Settings, since: datetime) -> bool:
    """The API serves, for every target, the outcome of the first run started after `since`: a new version,
    or the old one kept.

    Only that run counts: a version promoted by a run already under way at `since` (the trainer's
    start-up run on what was on Kafka before) is served first, and the run on the new labels comes after."""
    ended = run_ended_since(settings, since)
    if ended is None:
        return False
    if ended.stage == "failed":
        return True
    served = served_versions(settings)
    promoted: dict[str, list[str]] = {}
    for update in read_snapshot(settings, topics.MODEL_UPDATES).records:
        if update.created_at > since:
            promoted.setdefault(update.model_name, []).append(update.version)

    def target_settled(target: str) -> bool:
        newest = promoted.get(settings.policy_for(target))
        if newest:  # promoted: the API has swapped to the newest
            return served.get(target) == newest[-1]
        # Rejected by the gate: the served version stays (the default target has one by now).
        return served.get(target) is not None or target != settings.target_sentiment

    return all(target_settled(target) for target in settings.target_list)


def indexed_pages(es: Elasticsearch, settings: Settings, urls: list[str]) -> int:
    # By URL, not by this crawl: a page unchanged since an earlier crawl is not published again.
    query = {"bool": {"filter": [{"terms": {"url": urls}}]}}
    es.indices.refresh(index=settings.es_index)
    return es.count(index=settings.es_index, query=query)["count"]


def passages_by_url(settings: Settings) -> dict[str, int]:
    password = secrets.load_or_create(settings.secrets_file).doccano_password
    with DoccanoClient(settings.doccano_url, settings.doccano_username, password) as client:
        client.login()
        project = ensure_sentiment_project(client, settings.doccano_project)
        counts: dict[str, int] = {}
        for example in client.iter_examples(project.id):
            url = (example.get("meta") or {}).get("url")
            counts[url] = counts.get(url, 0) + 1
    return counts


def _wait_counting(
    count: Callable[[], int], total: int, *, what: str, step: int, timeout: float, console: DemoConsole
) -> int:
    deadline, last = time.monotonic() + timeout, -1
    while True:
        try:
            seen = count()
        except Exception:
            seen = 0
        if seen != last:
            console.count(step, what, seen, total)
            last = seen
        if seen >= total:
            return seen
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {seen}/{total} {what} after {timeout:.0f}s; see the logs in the data directory")
        time.sleep(2)


def _wait_for_training(settings: Settings, since: datetime, *, timeout: float, console: DemoConsole) -> None:
    """Until the run on the new labels has settled, showing its stage and step as they change."""
    deadline = time.monotonic() + timeout
    while not model_settled(settings, since):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no training run on the new labels settled after {timeout:.0f}s; see trainer.log")
        with suppress(Exception):  # Kafka busy for a moment: the next look shows it
            if (event := latest_progress(settings, since)) is not None:
                console.training(event)
        time.sleep(3)


def generate(settings: Settings, prompt: str, target: str) -> dict[str, Any]:
    """A generation from the target's policy; a target no version of which passed the gate yet says so."""
    body = {"prompt": prompt, "max_new_tokens": 60, "seed": 0, "target": target}
    answer = httpx.post(f"{settings.api_url}/generate", json=body, timeout=120)
    if answer.status_code == 503 and target != settings.target_sentiment:
        return {"completion": None, "model_version": None, "detail": answer.json().get("detail", "")}
    return answer.raise_for_status().json()


def run_loop(settings: Settings, *, timeout: float = 1800.0, console: DemoConsole | None = None) -> LoopReport:
    console = console or DemoConsole()
    console.step(1, "starting Kafka, Elasticsearch and doccano")
    services.up(settings)

    console.step(2, "starting the demo site, crawler, cleaner, sinks, label bridge, trainer and API")
    start_workers(settings)
    wait_until(
        lambda: httpx.get(settings.demo_site_url, timeout=5).status_code == 200, what="the demo site", timeout=60
    )
    wait_until(
        lambda: httpx.get(f"{settings.api_url}/health", timeout=5).status_code == 200, what="the API", timeout=180
    )
    previous_version = served_version(settings)

    crawl_id = f"demo-{uuid.uuid4().hex[:12]}"
    articles = load_articles()
    urls = [article_url(settings.demo_site_url, article.slug) for article in articles]
    console.step(3, f"crawling {settings.demo_site_url} (crawl {crawl_id}) with Chromium")
    producer = bus.make_producer(settings)
    for request in seed_requests([settings.demo_site_url], crawl_id=crawl_id, max_depth=1, allowed_domains=[]):
        bus.publish(producer, topics.CRAWL_REQUESTS, request)
    bus.flush_or_raise(producer)

    console.step(4, "waiting for clean pages to become searchable in Elasticsearch")
    es = Elasticsearch(settings.es_url, request_timeout=30)
    pages = _wait_counting(
        lambda: indexed_pages(es, settings, urls),
        len(urls),
        what="articles searchable",
        step=4,
        timeout=timeout,
        console=console,
    )

    console.step(5, "waiting for passages to reach doccano")
    _wait_counting(
        lambda: len(set(urls) & set(passages_by_url(settings))),
        len(urls),
        what="articles with passages in doccano",
        step=5,
        timeout=timeout,
        console=console,
    )
    passages = sum(passages_by_url(settings).get(url, 0) for url in urls)

    labels_from = datetime.now(UTC)
    console.step(6, "the scripted annotator labels passages through doccano's REST API")
    report = annotate(settings, limit=10_000)
    console.step(6, f"labelled {report.labelled} passages ({report.already_labelled} were labelled before)")

    expect_new = previous_version is None or report.labelled >= settings.train_min_labels
    console.step(
        7,
        "label bridge -> label events -> trainer: SFT, reward model, RL, gate"
        + ("" if expect_new else " (not enough new labels: keeping the served model)"),
    )
    if expect_new:
        _wait_for_training(settings, labels_from, timeout=timeout, console=console)
        ended = run_ended_since(settings, labels_from)
        if ended is not None and ended.stage == "failed":
            raise RuntimeError(f"training run {ended.run_id} failed: {ended.message}")
    version = served_version(settings)
    if version is None:
        raise TimeoutError("the API serves no model; see .data/logs/trainer.log")
    console.step(8, f"the API serves model version {version}")

    prompt = articles[0].title
    generations = {target: generate(settings, prompt, target) for target in settings.target_list}
    console.step(9, "done")
    return LoopReport(
        crawl_id, urls, pages, passages, report.labelled, version, generations[settings.target_sentiment], generations
    )


def main(settings: Settings, args: argparse.Namespace) -> int:
    # The terminal is for the steps; the demo's own log lines go to its log file.
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    with (settings.logs_dir / "demo.log").open("a") as log_file:
        logs.configure("demo", settings.log_level, "json", stream=log_file)
        console = DemoConsole()
        report = run_loop(settings, timeout=args.timeout, console=console)
        console.summary(settings, load_articles()[0].title, report.generations)
    return 0
