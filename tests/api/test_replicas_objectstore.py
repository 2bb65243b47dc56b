"""Two API replicas on one model store (the real s3proxy) and one model-updates topic, as on two hosts:
each with its own data directory, cache and port, the store's keys and the signing key given as settings."""

from __future__ import annotations

import uuid

import httpx
import pytest
from buckets import own_bucket
from store_hosts import generated_by, trainer_and_replicas
from topic_reader import read_records

from api.main import create_app
from ctrlgpt import objectstore
from deploy.processes import wait_until
from models.announcements import published
from streams import bus, topics
from streams.records import ModelLoadFailed

pytestmark = pytest.mark.integration

TIMEOUT_S = 180.0  # bound on waiting for the broker, a download and a load; no timing is asserted


def _serving(url: str) -> str | None:
    return httpx.get(f"{url}/health", timeout=30).json()["model_version"]


def test_a_promotion_reaches_both_replicas_and_a_corrupted_object_is_refused_by_both(
    settings, tmp_path, make_version, serve_api
):
    run = uuid.uuid4().hex[:12]
    with own_bucket(settings, "test-replicas") as bucket:
        trainer, replicas = trainer_and_replicas(settings, tmp_path, bucket, f"test-replicas-{run}")
        name = trainer.policy_for(trainer.target_sentiment)
        good = make_version(f"{run}-good", name=name, seed=1)
        corrupt = make_version(f"{run}-corrupt", name=name, parent=good.version, seed=2)
        bus.ensure_topics(settings, [topics.MODEL_UPDATES, topics.MODEL_LOAD_FAILURES, topics.dead_letter_topic("api")])
        producer = bus.make_producer(settings)
        try:
            with serve_api(replicas[0], create_app(replicas[0], monitor_kafka=False)) as url_a:
                bus.publish(producer, topics.MODEL_UPDATES, published(trainer, good.path))
                bus.flush_or_raise(producer)
                wait_until(lambda: _serving(url_a) == good.version, what="replica a serving", timeout=TIMEOUT_S)
                # The second replica starts once the first has loaded: in one process, transformers' model
                # loading is not thread-safe (its meta-device context is global); hosts do not share it.
                with serve_api(replicas[1], create_app(replicas[1], monitor_kafka=False)) as url_b:
                    wait_until(lambda: _serving(url_b) == good.version, what="replica b serving", timeout=TIMEOUT_S)
                    both_refuse_a_corrupted_object(settings, trainer, replicas, bucket, name, good, corrupt, producer)
                    for url in (url_a, url_b):
                        assert _serving(url) == good.version
                        assert generated_by(url) == good.version
                for replica in replicas:  # each downloaded the version into a cache of its own
                    assert (replica.model_cache_dir / name / good.version / "manifest.json").is_file()
        finally:
            producer.produce(topics.MODEL_UPDATES.name, key=name.encode(), value=None)  # retire the test's name
            producer.flush(30)


def both_refuse_a_corrupted_object(settings, trainer, replicas, bucket, name, good, corrupt, producer) -> None:
    # Published whole, then one object corrupted in the store before the announcement is read.
    record = published(trainer, corrupt.path)
    weights = f"models/{name}/{corrupt.version}/policy/model.safetensors"
    objectstore.client(trainer).put_object(Bucket=bucket, Key=weights, Body=b"corrupted" * 100)
    bus.publish(producer, topics.MODEL_UPDATES, record)
    bus.flush_or_raise(producer)

    ids = {replica.api_replica_id for replica in replicas}
    failures = read_records(
        settings,
        topics.MODEL_LOAD_FAILURES,
        until=lambda found: {failure.replica for failure in found} >= ids,
        keep=lambda r: isinstance(r, ModelLoadFailed) and r.replica in ids and r.version == corrupt.version,
        timeout=TIMEOUT_S,
    )
    assert {(f.replica, f.error_type, f.serving_version) for f in failures} == {
        (replica_id, "ChecksumMismatch", good.version) for replica_id in ids
    }
    assert all("model.safetensors" in failure.reason for failure in failures)
