"""The model store away is a pause for the API replicas, not a refusal.

Two replicas, each with its own data directory, cache, port and consumer group (as on two hosts),
follow one model-updates topic and take versions from the real s3proxy. The
object store is killed (kept down by supervisord), a version is announced: both keep serving the
old one, retry and publish no `ModelLoadFailed` or dead letter; a newer one announced meanwhile
supersedes it. The store is started again: both swap to the newest by themselves.
"""

from __future__ import annotations

import uuid
from contextlib import ExitStack

import httpx
import pytest
from buckets import own_bucket
from faults import kill_service, start_service
from store_hosts import generated_by, trainer_and_replicas
from topic_reader import read_records

from api.main import create_app
from deploy import processes
from deploy.processes import wait_until
from models.announcements import published
from streams import bus, topics
from streams.records import DeadLetter, ModelLoadFailed

pytestmark = pytest.mark.integration

TIMEOUT_S = 180.0  # bound on waiting for the broker, the store to start, a download, a load; no timing is asserted
QUIET_S = 5.0  # how long the load-failures and dead-letter topics are read for records of this test


def _health(url: str) -> dict:
    try:
        return httpx.get(f"{url}/health", timeout=10).json()
    except httpx.HTTPError:  # not listening yet
        return {}


def test_both_replicas_keep_serving_through_a_store_outage_and_swap_once_it_is_back(
    settings, tmp_path, make_version, serve_api
):
    run = uuid.uuid4().hex[:12]
    with own_bucket(settings, "test-outage") as bucket, ExitStack() as stack:
        trainer, replicas = trainer_and_replicas(settings, tmp_path, bucket, f"test-outage-{run}")
        target = trainer.target_sentiment
        name = trainer.policy_for(target)
        old = make_version(f"{run}-old", name=name, seed=1)
        new = make_version(f"{run}-new", name=name, parent=old.version, seed=2)
        newest = make_version(f"{run}-newest", name=name, parent=new.version, seed=3)
        bus.ensure_topics(settings, [topics.MODEL_UPDATES, topics.MODEL_LOAD_FAILURES, topics.dead_letter_topic("api")])
        producer = bus.make_producer(settings)
        stack.callback(producer.flush, 30)
        # Last out: retire the test's model name, and never leave the stack without its object store.
        stack.callback(producer.produce, topics.MODEL_UPDATES.name, key=name.encode(), value=None)
        stack.callback(lambda: processes.running_pid(settings, "objectstore") or start_service(settings, "objectstore"))

        bus.publish(producer, topics.MODEL_UPDATES, published(trainer, old.path))
        bus.flush_or_raise(producer)
        urls = [stack.enter_context(serve_api(r, create_app(r, monitor_kafka=False))) for r in replicas]
        for url in urls:
            wait_until(lambda url=url: _health(url).get("model_version") == old.version, what=url, timeout=TIMEOUT_S)

        # Both in the store whole, then the store goes away.
        announcements = {fixture.version: published(trainer, fixture.path) for fixture in (new, newest)}
        kill_service(settings, "objectstore")

        def retried(url: str, version: str, attempts: int) -> bool:
            pending = _health(url).get("pending_updates", {}).get(target, {})
            return pending.get("version") == version and pending.get("attempts", 0) >= attempts

        for version, attempts in ((new.version, 2), (newest.version, 1)):
            bus.publish(producer, topics.MODEL_UPDATES, announcements[version])
            bus.flush_or_raise(producer)
            for url in urls:
                wait_until(
                    lambda url=url, version=version, attempts=attempts: retried(url, version, attempts),
                    what=f"{url} waiting for {version}",
                    timeout=TIMEOUT_S,
                )
                health = _health(url)
                assert (health["status"], health["model_version"]) == ("ok", old.version)
                assert generated_by(url) == old.version
        metrics = httpx.get(f"{urls[0]}/metrics", timeout=30).text
        assert f'ctrlgpt_model_update_pending_seconds{{model_name="{name}",version="{newest.version}"}}' in metrics

        start_service(settings, "objectstore")
        for url in urls:
            wait_until(lambda url=url: _health(url).get("model_version") == newest.version, what=url, timeout=TIMEOUT_S)
            assert _health(url)["pending_updates"] == {}
            assert generated_by(url) == newest.version

        ids = {replica.api_replica_id for replica in replicas}
        never = lambda found: False  # noqa: E731 - read for QUIET_S: records that must not be there
        refusals = read_records(
            settings,
            topics.MODEL_LOAD_FAILURES,
            until=never,
            keep=lambda r: isinstance(r, ModelLoadFailed) and r.replica in ids,
            timeout=QUIET_S,
        )
        letters = read_records(
            settings,
            topics.dead_letter_topic("api"),
            until=never,
            keep=lambda r: isinstance(r, DeadLetter) and r.key == name,
            timeout=QUIET_S,
        )
        assert refusals == [] and letters == [], "an outage of the store was treated as a refusal"
