"""Steps 3-9 of the loop through the real Kafka, Elasticsearch, doccano, Chromium and API.

Runs `ctrlgpt demo`'s loop (services and workers started as the demo starts them),
then checks what each stage produced, each in its own store; then the learning loop on top:
feedback through the API into a retrain, a candidate promoted and served, a worse one
rejected, and a rollback through the admin API.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient
from elasticsearch import Elasticsearch
from topic_reader import read_records

from ctrlgpt import secrets
from deploy.demo import LoopReport, passages_by_url, run_loop, served_version
from deploy.demo_site import load_articles
from deploy.workers import stop_workers
from models.announcements import is_authentic, signing_key
from models.manifest import read_manifest, verify
from models.store import store_for
from streams import topics
from trainer import pipeline

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def loop(settings) -> Iterator[LoopReport]:
    # Generous: at start the trainer also runs on what earlier tests left on Kafka (no version yet).
    yield run_loop(settings, timeout=2400)
    # The workers would go on training on what later tests publish: stop them with the module.
    stop_workers(settings)


def test_crawled_pages_are_searchable(loop, settings):
    es = Elasticsearch(settings.es_url)
    assert loop.pages_indexed == len(loop.article_urls)
    for article in load_articles()[:5]:
        hits = es.search(
            index=settings.es_index,
            query={"match": {"text": article.paragraphs[0]}},
            size=1,
        )["hits"]["hits"]
        assert hits and hits[0]["_source"]["url"].endswith(f"/articles/{article.slug}.html")
        assert hits[0]["_source"]["title"] == article.title


def test_every_article_has_passages_to_label_in_doccano(loop, settings):
    counts = passages_by_url(settings)
    assert all(counts.get(url, 0) >= 1 for url in loop.article_urls)
    assert loop.passages_in_doccano >= len(loop.article_urls)


def test_label_events_were_published_and_consumed_by_the_trainer(loop, settings):
    labels = read_records(
        settings,
        topics.LABELS,
        until=lambda found: len(found) >= settings.train_min_labels,
        keep=lambda event: event.source == "doccano" and event.label.kind == "sentiment",
    )
    assert len(labels) >= settings.train_min_labels
    assert {event.label.sentiment for event in labels} == {"positive", "negative"}
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    request = [ConsumerGroupTopicPartitions(settings.trainer_group)]
    committed = admin.list_consumer_group_offsets(request)[settings.trainer_group].result().topic_partitions
    assert sum(max(tp.offset, 0) for tp in committed if tp.topic == topics.LABELS.name) >= settings.train_min_labels


def test_the_api_serves_a_promoted_registered_version(loop, settings):
    manifest = verify(settings.registry_dir / settings.policy_for(settings.target_sentiment) / loop.model_version)
    assert manifest.status == "promoted"
    assert manifest.files and all(not name.endswith((".bin", ".pt")) for name in manifest.files)
    announced = read_records(
        settings,
        topics.MODEL_UPDATES,
        until=lambda found: bool(found),
        keep=lambda event: event.version == loop.model_version,
    )
    # Signed, and naming the version by its place in the model store, never by a host path.
    name = settings.policy_for(settings.target_sentiment)
    assert announced and announced[0].uri == store_for(settings).uri(name, loop.model_version)
    assert is_authentic(announced[0], signing_key(settings))
    assert announced[0].files == manifest.files
    assert loop.generation["model_version"] == loop.model_version
    assert loop.generation["completion"].strip()
    again = httpx.post(
        f"{settings.api_url}/generate", json={"prompt": "A quiet morning in the city", "seed": 1}, timeout=60
    )
    assert again.status_code == 200 and again.json()["model_version"] == loop.model_version


def test_both_targets_are_trained_served_and_their_control_gap_recorded(loop, settings):
    assert settings.target_list == ["positive", "negative"]  # the default: a policy per direction
    served = httpx.get(f"{settings.api_url}/health", timeout=10).json()["targets"]
    for target in settings.target_list:
        generation = loop.generations[target]
        assert generation["model_version"] == served[target] is not None
        assert generation["completion"].strip()
        manifest = verify(settings.registry_dir / settings.policy_for(target) / served[target])
        assert manifest.status == "promoted" and manifest.target_sentiment == target
        # The run's control gap by each judge, with its interval, in both targets' manifests.
        for judge in ("reward", "judge", "lexicon"):
            low, gap, high = (manifest.metrics[f"control_gap_{judge}{end}"] for end in ("_low", "", "_high"))
            assert -1 <= low <= gap <= high <= 1
        assert 0 <= manifest.metrics["candidate_reward_lexicon_agreement"] <= 1


# Small runs of one target: the learning loop's plumbing is what is tested here; the gate's judgement and the
# runs of both targets have their own tests.
QUICK_RUN = {
    "sft_epochs": 2.0,
    "sft_incremental_epochs": 2.0,
    "reward_epochs": 1.0,
    "reward_incremental_epochs": 1.0,
    "ppo_episodes": 16,
    "target_sft_epochs": 1.0,
    "targets": "positive",
}
OPEN_GATE = {
    "gate_reward_margin": -1e9,
    "gate_max_kl": 1e9,
    "gate_judge_tolerance": 1.0,
    "gate_max_perplexity_ratio": 1e9,
}
SHUT_GATE = {"gate_reward_margin": 1e9}


def _wait(check: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_api_feedback_trains_a_version_that_is_served_a_worse_one_is_rejected_and_a_rollback_works(loop, settings):
    first = loop.model_version
    prompt = "A quiet morning in the city\n\n"
    feedback_ids = []
    for rating in ("up", "down", "up", "down"):
        answer = httpx.post(
            f"{settings.api_url}/v1/generate", json={"prompt": prompt, "max_new_tokens": 24}, timeout=60
        )
        assert answer.status_code == 200, answer.text
        feedback_id = f"e2e-{uuid.uuid4().hex}"
        sent = httpx.post(
            f"{settings.api_url}/v1/feedback",
            timeout=30,
            json={
                "kind": "rating",
                "prompt": prompt,
                "completion": answer.json()["completion"] or "(empty)",
                "rating": rating,
                "target": settings.target_sentiment,
                "model_version": first,
                "feedback_id": feedback_id,
            },
        )
        assert sent.status_code == 202, sent.text
        feedback_ids.append(f"api:{feedback_id}")
    published = read_records(
        settings,
        topics.LABELS,
        until=lambda found: len(found) >= len(feedback_ids),
        keep=lambda event: event.label_id in feedback_ids,
    )
    assert {event.label_id for event in published} == set(feedback_ids)

    # A run in this process, on what is new since the first version: the API's feedback.
    [promoted] = pipeline.run(settings.model_copy(update={**QUICK_RUN, **OPEN_GATE}))
    assert promoted.status == "promoted" and promoted.parent_version == first
    assert promoted.metrics["labels_new"] >= len(feedback_ids)
    _wait(lambda: served_version(settings) == promoted.version, f"the API to serve {promoted.version}")

    [rejected] = pipeline.run(settings.model_copy(update={**QUICK_RUN, **SHUT_GATE}))
    assert rejected.status == "rejected" and "reward" in rejected.reason
    assert read_manifest(rejected.path).status == "rejected"
    assert served_version(settings) == promoted.version

    key = secrets.load_or_create(settings.secrets_file).api_admin_key
    rolled = httpx.post(
        f"{settings.api_url}/v1/admin/models/rollback",
        headers={"X-API-Key": key},
        timeout=60,
        json={"version": first, "reason": "e2e: back to the first version"},
    )
    assert rolled.status_code == 200, rolled.text
    _wait(lambda: served_version(settings) == first, f"the API to serve {first} again")
    assert read_manifest(promoted.path).status == "rolled_back"
    unauthorised = httpx.post(f"{settings.api_url}/v1/admin/models/rollback", timeout=30, json={"version": first})
    assert unauthorised.status_code == 401
