"""The trainer worker against the real broker: labels and operator commands start runs, a cancel stops one."""

from __future__ import annotations

import threading
import uuid

import pytest
from registry_versions import add_version
from topic_reader import read_records

from deploy.processes import wait_until
from models import operations
from models.registry import Registry
from streams import bus, topics
from streams.commands import request_training
from streams.records import LabelRecorded, TrainingRequested, TrainingRunProgressed
from streams.topics import Topic
from trainer import pipeline
from trainer.progress import RunCancelled
from trainer.trigger import TriggerPolicy
from trainer.worker import TrainingScheduler, nothing_to_serve_yet_labels_waiting, serve

pytestmark = pytest.mark.integration

TIMEOUT_S = 120.0  # a bound on waiting for the broker; no timing is asserted


def test_worker_trains_on_labels_and_commands_and_cancels_on_command(settings, make_labels):
    run = uuid.uuid4().hex
    labels = Topic(f"ctrlgpt.test.worker.labels.{run}", LabelRecorded, key="label_id", partitions=2)
    commands = Topic(f"ctrlgpt.test.worker.commands.{run}", TrainingRequested, key="command", partitions=1)
    bus.ensure_topics(settings, [labels, commands])
    started: list[str] = []
    cancelled: list[str] = []

    def stand_in_run(run_id: str, cancel: threading.Event) -> None:
        """Holds like a long training run until cancelled."""
        started.append(run_id)
        cancel.wait(TIMEOUT_S)
        cancelled.append(run_id)
        raise RunCancelled(run_id)

    scheduler = TrainingScheduler(TriggerPolicy(min_labels=3), stand_in_run)
    stop = threading.Event()
    worker = threading.Thread(
        target=serve,
        args=(settings, scheduler, stop),
        kwargs={"labels": labels, "commands": commands, "group": f"test-{run}", "commands_group": f"test-{run}-c"},
    )
    worker.start()
    producer = bus.make_producer(settings)
    try:
        for event in make_labels(3, prefix=run):
            bus.publish(producer, labels, event)
        bus.flush_or_raise(producer)
        wait_until(lambda: len(started) == 1, what="a run started by 3 labels", timeout=TIMEOUT_S)

        request_training(settings, "cancel", run_id=started[0], producer=producer, topic=commands)
        wait_until(
            lambda: cancelled == started and scheduler.running is None, what="the run cancelled", timeout=TIMEOUT_S
        )

        request_training(settings, "train", reason="test", producer=producer, topic=commands)
        wait_until(lambda: len(started) == 2, what="a run started by the operator", timeout=TIMEOUT_S)
    finally:
        stop.set()
        worker.join(TIMEOUT_S)
    assert not worker.is_alive()
    assert cancelled == started, "stopping the worker cancels its running run"


def test_a_cancelled_run_announces_it_and_registers_nothing(settings, make_pages, make_labels, tmp_path):
    run = uuid.uuid4().hex
    bus.ensure_topics(settings, [topics.PAGES_CLEAN, topics.LABELS, topics.TRAINING_RUNS])
    producer = bus.make_producer(settings)
    for page in make_pages(6, crawl_id=f"test-{run}"):
        bus.publish(producer, topics.PAGES_CLEAN, page)
    for event in make_labels(8, prefix=f"test-{run}"):
        bus.publish(producer, topics.LABELS, event)
    bus.flush_or_raise(producer)
    local = settings.model_copy(update={"data_dir": tmp_path, "policy_name": f"test-{run}"})
    cancel = threading.Event()
    cancel.set()  # cancelled while it read its data

    with pytest.raises(RunCancelled):
        pipeline.run(local, run_id=run, stop=cancel)

    assert Registry(local.registry_dir).versions() == []
    progress = read_records(
        settings,
        topics.TRAINING_RUNS,
        until=lambda found: any(r.stage == "cancelled" for r in found),
        keep=lambda r: isinstance(r, TrainingRunProgressed) and r.run_id == run,
    )
    assert progress[-1].stage == "cancelled" and "failed" not in {r.stage for r in progress}


def test_a_trainer_with_labels_on_kafka_and_no_version_to_serve_asks_for_a_run(settings, tmp_path, make_labels):
    local = settings.model_copy(update={"data_dir": tmp_path, "train_min_labels": 3})
    labels = Topic(f"ctrlgpt.test.worker.waiting.{uuid.uuid4().hex}", LabelRecorded, key="label_id", partitions=2)
    bus.ensure_topics(local, [labels])
    assert not nothing_to_serve_yet_labels_waiting(local, labels)  # no label yet: nothing to train on

    producer = bus.make_producer(local)
    for event in make_labels(3):
        bus.publish(producer, labels, event)
    bus.flush_or_raise(producer)
    assert nothing_to_serve_yet_labels_waiting(local, labels)

    registry = operations.registry_for(local)
    registry.promote(add_version(registry, 1), "served")
    assert not nothing_to_serve_yet_labels_waiting(local, labels)  # a version to serve: labels trigger as usual
