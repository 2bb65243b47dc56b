"""Steps 3-9 of the loop through the real Kafka, Elasticsearch, doccano, Chromium and API.

Runs `ctrlgpt demo`'s loop (services and workers started as the demo starts them),
then checks what each stage produced, each in its own store.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient
from elasticsearch import Elasticsearch

from deploy.demo import LoopReport, passages_by_url, run_loop
from deploy.demo_site import load_articles
from deploy.workers import stop_workers
from streams import topics
from topic_reader import read_records
from trainer.manifest import verify

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def loop(settings) -> Iterator[LoopReport]:
    yield run_loop(settings, timeout=1500)
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
        settings, topics.LABELS, until=lambda found: len(found) >= settings.train_min_labels,
        keep=lambda event: event.source == "doccano" and event.label.kind == "sentiment",
    )
    assert len(labels) >= settings.train_min_labels
    assert {event.label.sentiment for event in labels} == {"positive", "negative"}
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    request = [ConsumerGroupTopicPartitions("ctrlgpt-trainer")]
    committed = admin.list_consumer_group_offsets(request)["ctrlgpt-trainer"].result().topic_partitions
    assert sum(max(tp.offset, 0) for tp in committed if tp.topic == topics.LABELS.name) >= settings.train_min_labels


def test_the_api_serves_a_promoted_registered_version(loop, settings):
    manifest = verify(settings.registry_dir / settings.policy_for(settings.target_sentiment) / loop.model_version)
    assert manifest.status == "promoted"
    assert manifest.files and all(not name.endswith((".bin", ".pt")) for name in manifest.files)
    announced = read_records(
        settings, topics.MODEL_UPDATES, until=lambda found: bool(found),
        keep=lambda event: event.version == loop.model_version,
    )
    assert announced and announced[0].path == str(settings.registry_dir / settings.policy_for(settings.target_sentiment) / loop.model_version)
    assert loop.generation["model_version"] == loop.model_version
    assert loop.generation["completion"].strip()
    again = httpx.post(f"{settings.api_url}/generate", json={"prompt": "A quiet morning in the city", "seed": 1}, timeout=60)
    assert again.status_code == 200 and again.json()["model_version"] == loop.model_version
