"""`ctrlgpt kube probe` against the real broker: a pod is healthy while a member of its group connects from it."""

from __future__ import annotations

import time
import uuid

import pytest

from ctrlgpt.settings import Settings
from deploy.kubernetes import pod
from streams import bus
from streams.records import DeadLetter
from streams.topics import Topic

pytestmark = pytest.mark.integration

LOOPBACK = "127.0.0.1"  # the address the broker sees this test's consumer connect from


def test_the_probe_follows_the_groups_membership(settings: Settings) -> None:
    topic = Topic(f"ctrlgpt.test.probe-{uuid.uuid4().hex[:8]}", DeadLetter, key="key", partitions=1)
    bus.ensure_topics(settings, [topic])
    group = f"ctrlgpt-test-probe-{uuid.uuid4().hex[:8]}"
    consumer = bus.make_consumer(settings, group)
    consumer.subscribe([topic.name])
    try:
        deadline = time.monotonic() + 60
        while not consumer.assignment():
            assert time.monotonic() < deadline, "the consumer never joined its group"
            consumer.poll(0.5)
        assert pod.probe(settings, group, LOOPBACK)
        assert not pod.probe(settings, group, "192.0.2.1")  # TEST-NET-1: no member connects from there
    finally:
        consumer.close()
    assert not pod.probe(settings, group, LOOPBACK)  # left the group: no longer healthy
