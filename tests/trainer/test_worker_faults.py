"""The trainer through faults, a real `ctrlgpt trainer` process against the real broker: Kafka killed
while labels arrive, and label and command records it cannot read. No training run: the trigger's
threshold is out of reach, and the trainer's log says how many labels it has counted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from cleaner_harness import start_group_at_end
from faults import kill_service, start_service
from topic_reader import read_records

from ctrlgpt.settings import REPO_ROOT, Settings
from streams import bus, groups, topics
from streams.records import DeadLetter

pytestmark = pytest.mark.integration

KAFKA_AWAY_S = 45.0
JUST_UNDER_THE_LIMIT = 8 * 1024 * 1024 - 64 * 1024  # the broker's message.max.bytes is 8 MiB


def _start_trainer(group: str, data_dir: Path, log_path: Path) -> subprocess.Popen:
    overrides = {"trainer_group": group, "data_dir": data_dir, "train_min_labels": 1_000_000, "train_interval_s": 0}
    command = [sys.executable, "-m", "ctrlgpt.cli"]
    for name, value in overrides.items():
        command += ["--set", f"{name}={value}"]
    with log_path.open("ab") as log_file:
        return subprocess.Popen([*command, "trainer"], cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT)


def _pending_labels(log_path: Path) -> int:
    """The trainer's latest count of distinct labels waiting for a run (its `trainer.labels_pending` log)."""
    pending = 0
    for line in log_path.read_text(errors="replace").splitlines():
        if '"trainer.labels_pending"' in line:
            pending = json.loads(line)["pending"]
    return pending


def _wait_for_pending(log_path: Path, worker: subprocess.Popen, expected: int, timeout: float = 180.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and worker.poll() is None and _pending_labels(log_path) < expected:
        time.sleep(0.5)
    return _pending_labels(log_path)


def test_kafka_away_while_labels_arrive_the_trainer_stays_up_counts_every_label_and_dead_letters_the_unreadable(
    settings: Settings, tmp_path, make_labels
):
    run = uuid.uuid4().hex
    group = f"test-trainer-{run}"
    bus.ensure_topics(settings, [topics.LABELS, topics.TRAINING_COMMANDS, topics.dead_letter_topic("train")])
    start_group_at_end(settings, group, topics.LABELS.name)
    start_group_at_end(settings, groups.trainer_commands(group), topics.TRAINING_COMMANDS.name)
    labels = make_labels(41, prefix=run)  # 20 before the outage, 20 during it, 1 after the unreadable records
    poison = {
        (topics.LABELS.name, f"{run}-just-under-the-limit"): os.urandom(JUST_UNDER_THE_LIMIT),
        (topics.LABELS.name, f"{run}-not-json"): b"{not json",
        (topics.TRAINING_COMMANDS.name, f"{run}-wrong-schema"): json.dumps({"command": "explode"}).encode(),
    }
    log_path = tmp_path / "trainer.log"
    worker = _start_trainer(group, tmp_path / "data", log_path)
    producer = bus.make_producer(settings)
    try:
        for label in labels[:20]:
            bus.publish(producer, topics.LABELS, label)
        bus.flush_or_raise(producer)
        before_outage = _wait_for_pending(log_path, worker, 20)
        kill_service(settings, "kafka")
        try:
            for label in labels[20:40]:
                bus.publish(producer, topics.LABELS, label)  # queued in the producer until Kafka is back
            deadline = time.monotonic() + KAFKA_AWAY_S
            while time.monotonic() < deadline and worker.poll() is None:
                time.sleep(1)
            alive_through_outage = worker.poll() is None
        finally:
            start_service(settings, "kafka")
        bus.flush_or_raise(producer, timeout=120)
        after_outage = _wait_for_pending(log_path, worker, 40)
        for (topic, key), value in poison.items():
            producer.produce(topic, key=key.encode(), value=value)
        bus.publish(producer, topics.LABELS, labels[40])
        bus.flush_or_raise(producer)
        after_poison = _wait_for_pending(log_path, worker, len(labels))
        letters = read_records(
            settings,
            topics.dead_letter_topic("train"),
            until=lambda found: {(letter.source_topic, letter.key) for letter in found} >= set(poison),
            keep=lambda letter: (
                isinstance(letter, DeadLetter) and letter.key is not None and letter.key.startswith(run)
            ),
            timeout=120,
        )
        alive_at_end = worker.poll() is None
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        rc = worker.wait(timeout=120)
    log = log_path.read_text(errors="replace")[-20000:]
    by_key = {(letter.source_topic, letter.key): letter for letter in letters}

    assert before_outage == 20, log
    assert alive_through_outage and alive_at_end, log
    assert after_outage == 40, log
    assert after_poison == len(labels), log
    assert set(by_key) == set(poison), log
    assert all(letter.stage == "train" for letter in letters)
    oversized = by_key[(topics.LABELS.name, f"{run}-just-under-the-limit")]
    assert oversized.truncated and oversized.original_size == JUST_UNDER_THE_LIMIT
    assert rc == 0, log
