"""`ctrlgpt lag` against the real broker, on its own topics and groups."""

from __future__ import annotations

import argparse
import json
import threading
import uuid

import pytest
from confluent_kafka import Producer, TopicPartition

from deploy import lag
from streams import bus
from streams.records import DeadLetter
from streams.topics import Topic

pytestmark = pytest.mark.integration


def make_topic(settings, name: str) -> Topic:
    topic = Topic(name, DeadLetter, key="key", partitions=1)
    bus.ensure_topics(settings, [topic])
    return topic


def produce(settings, topic: Topic, count: int) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for i in range(count):
        producer.produce(topic.name, value=f"record {i}".encode())
    assert producer.flush(30) == 0


def consume_and_commit(settings, topic: Topic, group: str, count: int) -> None:
    """Read `count` records in `group`, commit after them, and leave the group."""
    consumer = bus.make_consumer(settings, group)
    consumer.assign([TopicPartition(topic.name, 0, 0)])
    read = 0
    while read < count:
        msg = consumer.poll(10)
        assert msg is not None and not msg.error()
        read += 1
    consumer.commit(offsets=[TopicPartition(topic.name, 0, count)], asynchronous=False)
    consumer.close()


def run_lag(settings, capsys, groups: list[str], while_sampling=None) -> tuple[int, dict]:
    args = argparse.Namespace(group=groups, watch=False, samples=3, interval=1.0, json=True)
    done = threading.Event()
    worker = threading.Thread(target=while_sampling, args=(done,)) if while_sampling else None
    if worker:
        worker.start()
    try:
        code = lag.main(settings, args)
    finally:
        done.set()
        if worker:
            worker.join()
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return code, {g["group"]: g for g in report}


def test_a_caught_up_group_is_ok_and_one_that_stopped_while_the_topic_grows_is_stop_in_one_shot(settings, capsys):
    run = uuid.uuid4().hex
    quiet, growing = (
        make_topic(settings, f"ctrlgpt.test.lag.quiet.{run}"),
        make_topic(settings, f"ctrlgpt.test.lag.grow.{run}"),
    )
    caught_up, stopped = f"test-lag-ok-{run}", f"test-lag-stopped-{run}"
    produce(settings, quiet, 5)
    consume_and_commit(settings, quiet, caught_up, 5)
    code, groups = run_lag(settings, capsys, [caught_up])
    ok = groups[caught_up]
    assert (ok["status"], ok["total_lag"], ok["partitions"][0]["committed"], ok["partitions"][0]["end"]) == (
        "OK",
        0,
        5,
        5,
    )
    assert ok["partitions"][0]["time_to_drain_s"] == 0.0 and code == 0

    produce(settings, growing, 4)
    consume_and_commit(settings, growing, stopped, 2)

    def grow(done: threading.Event) -> None:
        while not done.wait(0.4):
            produce(settings, growing, 1)

    # Nobody owns the partition and its offset did not move in the window: STOP in one shot of a few
    # seconds, with lag_stop_after_s (120 s) far away; an ERR for Burrow, exit status 2 (CRITICAL).
    code, groups = run_lag(settings, capsys, [caught_up, stopped], while_sampling=grow)
    dead = groups[stopped]
    assert (dead["status"], dead["burrow_status"], dead["state"], dead["members"]) == ("STOP", "ERR", "EMPTY", 0)
    assert dead["partitions"][0]["committed"] == 2 and dead["partitions"][0]["lag"] >= 2
    assert dead["partitions"][0]["time_to_drain_s"] is None
    assert code == 2


def test_a_live_member_falling_behind_warns_with_exit_status_1(settings, capsys):
    run = uuid.uuid4().hex
    topic = make_topic(settings, f"ctrlgpt.test.lag.behind.{run}")
    group = f"test-lag-behind-{run}"
    produce(settings, topic, 3)
    member = bus.make_consumer(settings, group, **{"session.timeout.ms": 10_000})
    member.subscribe([topic.name])

    def consume_slower_than_produced(done: threading.Event) -> None:
        committed = 0
        while not done.wait(0.3):
            produce(settings, topic, 2)
            committed += 1
            member.commit(offsets=[TopicPartition(topic.name, 0, committed)], asynchronous=False)

    try:
        while not member.assignment():
            member.poll(0.5)  # joins the group and owns the partition
        code, groups = run_lag(settings, capsys, [group], while_sampling=consume_slower_than_produced)
    finally:
        member.close()
    behind = groups[group]
    assert (behind["status"], behind["burrow_status"], behind["members"]) == ("WARN", "WARN", 1)
    assert behind["partitions"][0]["owned"] is True and code == 1


def test_an_unknown_group_is_reported_as_none(settings, capsys):
    code, groups = run_lag(settings, capsys, [f"test-lag-absent-{uuid.uuid4().hex}"])
    assert groups == {} and code == 0


def test_an_unreachable_broker_exits_3_unknown_and_prints_no_report(settings, capsys):
    unreachable = settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:9", "ops_kafka_timeout_s": 1.0})
    args = argparse.Namespace(group=[], watch=False, samples=1, interval=1.0, json=True)
    assert lag.main(unreachable, args) == 3
    out = capsys.readouterr().out
    assert "no consumer group" not in out and not any(line.startswith("[") for line in out.splitlines())


def test_a_live_member_that_does_not_move_is_stall(settings, capsys):
    run = uuid.uuid4().hex
    topic = make_topic(settings, f"ctrlgpt.test.lag.stall.{run}")
    group = f"test-lag-stall-{run}"
    produce(settings, topic, 6)
    member = bus.make_consumer(settings, group, **{"session.timeout.ms": 10_000})
    member.subscribe([topic.name])
    try:
        while not member.assignment():
            member.poll(0.5)  # joins the group; what it reads is never committed past offset 1
        member.commit(offsets=[TopicPartition(topic.name, 0, 1)], asynchronous=False)
        impatient = settings.model_copy(update={"lag_stop_after_s": 1.0})
        code, groups = run_lag(impatient, capsys, [group])
    finally:
        member.close()
    stalled = groups[group]
    assert (stalled["status"], stalled["burrow_status"], stalled["members"]) == ("STALL", "ERR", 1)
    assert stalled["partitions"][0]["owned"] is True and stalled["partitions"][0]["lag"] == 5
    assert code == 2
