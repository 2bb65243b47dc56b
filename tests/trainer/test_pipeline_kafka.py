"""Training runs against the real broker: reading the topics, announcing progress and promotions."""

from __future__ import annotations

import uuid

import pytest
from topic_reader import read_records

from ctrlgpt.settings import Settings
from models import manifest
from streams import bus, topics
from streams.records import ModelPromoted, TrainingRunProgressed
from trainer import pipeline

pytestmark = pytest.mark.integration


def test_run_trains_on_the_topics_and_announces_the_promotion(settings, make_pages, make_labels, tmp_path):
    run = uuid.uuid4().hex
    bus.ensure_topics(settings, [topics.PAGES_CLEAN, topics.LABELS, topics.TRAINING_RUNS, topics.MODEL_UPDATES])
    producer = bus.make_producer(settings)
    for page in make_pages(12, crawl_id=f"test-{run}"):
        bus.publish(producer, topics.PAGES_CLEAN, page)
    for event in make_labels(16, prefix=f"test-{run}"):
        bus.publish(producer, topics.LABELS, event)
    bus.flush_or_raise(producer)
    quick = Settings.model_validate(
        {
            **settings.model_dump(),
            "data_dir": tmp_path,
            "policy_name": f"test-{run}",
            "sft_epochs": 1.0,
            "sft_incremental_epochs": 1.0,
            "reward_epochs": 1.0,
            "reward_incremental_epochs": 1.0,
            "ppo_episodes": 8,
            "target_sft_epochs": 1.0,
            "targets": "positive",  # the run's plumbing through Kafka; both targets' runs: test_stages
            "train_max_new_pages": 40,
            "train_replay_pages": 8,
        }
    )

    [outcome] = pipeline.run(quick, run_id=run)

    name = quick.policy_for(quick.target_sentiment)
    assert outcome.status == "promoted" and outcome.model_name == name
    first = manifest.verify(outcome.path, outcome.manifest_sha256)
    assert first.label_offsets and first.page_offsets and first.metrics["labels_new"] >= 16
    [promoted] = read_records(
        settings,
        topics.MODEL_UPDATES,
        until=lambda found: len(found) == 1,
        keep=lambda r: isinstance(r, ModelPromoted) and r.model_name == name and r.version == outcome.version,
    )
    assert promoted.manifest_sha256 == outcome.manifest_sha256 and "candidate_reward_mean" in promoted.metrics
    progress = read_records(
        settings,
        topics.TRAINING_RUNS,
        until=lambda found: any(r.stage == "done" for r in found),
        keep=lambda r: isinstance(r, TrainingRunProgressed) and r.run_id == run,
    )
    stages = {r.stage for r in progress}
    assert {"queued", "data", "tokenizer", "sft", "reward", "ppo", "gate", "register", "done"} <= stages

    for event in make_labels(4, prefix=f"test-{run}-more"):
        bus.publish(producer, topics.LABELS, event)
    bus.flush_or_raise(producer)

    [again] = pipeline.run(quick, run_id=f"{run}-again")

    second = manifest.verify(again.path, again.manifest_sha256)
    assert second.parent_version == outcome.version  # warm-started from the first run's version
    assert 4 <= second.metrics["labels_new"] < first.metrics["labels_new"]
    assert second.metrics["labels_replayed"] <= quick.train_replay_labels
    assert sum(second.label_offsets.values()) >= sum(first.label_offsets.values()) + 4


def test_a_failed_run_announces_why(settings, tmp_path):
    run = uuid.uuid4().hex
    wrong = Settings.model_validate({**settings.model_dump(), "data_dir": tmp_path, "targets": "negative"})

    with pytest.raises(ValueError, match="must include target_sentiment"):
        pipeline.run(wrong, run_id=run)

    [failed] = read_records(
        settings,
        topics.TRAINING_RUNS,
        until=lambda found: len(found) == 1,
        keep=lambda r: isinstance(r, TrainingRunProgressed) and r.run_id == run and r.stage == "failed",
    )
    assert "must include target_sentiment 'positive'" in failed.message
