"""The trainer publishes a promoted version to the S3 model store (the real s3proxy) before announcing it."""

from __future__ import annotations

import uuid

import pytest
from buckets import own_bucket
from registry_versions import add_version
from topic_reader import read_records

from ctrlgpt import objectstore
from models import manifest
from models.announcements import is_authentic, signing_key
from models.registry import model_registry
from models.store import store_for
from streams import bus, topics
from streams.records import ModelPromoted
from trainer import run_io
from trainer.steering import RunOutcome

pytestmark = pytest.mark.integration


def test_a_promoted_version_is_in_the_store_whole_when_it_is_announced(settings, tmp_path):
    run = uuid.uuid4().hex[:12]
    with own_bucket(settings, "test-trainer") as bucket:
        keys = objectstore.credentials(settings)  # the stack's s3proxy's, given as settings as on another host
        trainer = settings.model_copy(
            update={
                "data_dir": tmp_path,
                "policy_name": f"test-publish-{run}",
                "model_store": f"s3://{bucket}/v",
                "objectstore_access_key": keys.access_key,
                "objectstore_secret_key": keys.secret_key,
            }
        )
        name = trainer.policy_for(trainer.target_sentiment)
        registry = model_registry(trainer.registry_dir, name)
        promoted, rejected = add_version(registry, 1, name=name), add_version(registry, 2, name=name)
        sha = registry.promote(promoted, "passed the gate")
        registry.reject(rejected, "failed the gate")
        producer = bus.make_producer(settings)
        bus.ensure_topics(settings, [topics.MODEL_UPDATES])
        for version, status in ((rejected, "rejected"), (promoted, "promoted")):
            outcome = RunOutcome(run, version, status, "gate", registry.path(version), sha, None, model_name=name)
            run_io.announce_promotion(trainer, producer, outcome)
        try:
            [record] = read_records(
                settings,
                topics.MODEL_UPDATES,
                until=bool,
                keep=lambda r: isinstance(r, ModelPromoted) and r.model_name == name,
            )
            assert (record.version, record.uri, record.manifest_sha256) == (
                promoted,
                f"s3://{bucket}/v/{name}/{promoted}",
                sha,
            )
            assert record.files == registry.manifest(promoted).files and is_authentic(record, signing_key(trainer))
            replica = trainer.model_copy(update={"data_dir": tmp_path / "replica"})
            assert manifest.verify(store_for(replica).fetch(name, promoted, sha), sha).status == "promoted"
            keys = [item["Key"] for item in objectstore.client(trainer).list_objects_v2(Bucket=bucket)["Contents"]]
            assert not [key for key in keys if rejected in key]  # only what is announced is published
        finally:
            producer.produce(topics.MODEL_UPDATES.name, key=name.encode(), value=None)
            producer.flush(30)
