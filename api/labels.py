"""People's feedback as label events on Kafka: the request body -> `LabelRecorded`, and its publisher.

A feedback is acknowledged only once Kafka holds it: one publish at a time waits for its own
delivery report (so a failure is never blamed on another request), bounded by
`feedback_timeout_s`; the caller answers 503 and the client retries. A retry carrying the same
`feedback_id` gets the same label id, and label consumers count label ids, not events.
"""

from __future__ import annotations

import threading
import uuid

from confluent_kafka import Producer

from ctrlgpt.settings import Settings
from streams import bus, topics
from streams.records import LabelRecorded, PreferenceLabel, RatingLabel

LABEL_ID_PREFIX = "api:"  # a client's id never collides with doccano's label ids (doccano:...)
ANONYMOUS = "anonymous"


def label_id_for(feedback_id: str | None) -> str:
    return LABEL_ID_PREFIX + (feedback_id if feedback_id is not None else uuid.uuid4().hex)


def label_event(
    label: RatingLabel | PreferenceLabel, *, feedback_id: str | None, client_id: str | None, model_version: str | None
) -> LabelRecorded:
    return LabelRecorded(
        label_id=label_id_for(feedback_id),
        source="api",
        annotator=client_id or ANONYMOUS,
        label=label,
        model_version=model_version,
    )


class LabelPublisher:
    """Publishes label events one at a time and waits for each to be acknowledged by Kafka."""

    def __init__(self, settings: Settings) -> None:
        self._timeout_s = settings.feedback_timeout_s
        timeout_ms = int(self._timeout_s * 1000)
        # A message Kafka has not taken within the timeout fails instead of waiting the default two minutes.
        # (librdkafka's least connection-setup timeout is one second.)
        self._producer: Producer = bus.make_producer(
            settings,
            **{
                "delivery.timeout.ms": timeout_ms,
                "linger.ms": 0,
                "socket.connection.setup.timeout.ms": max(timeout_ms, 1000),
            },
        )
        self._lock = threading.Lock()

    def publish(self, event: LabelRecorded) -> None:
        """Blocking: returns once Kafka has the event, else raises `bus.ServiceUnavailable`."""
        if not self._lock.acquire(timeout=self._timeout_s):
            raise bus.ServiceUnavailable(f"Kafka did not take earlier feedback within {self._timeout_s}s")
        try:
            bus.publish(self._producer, topics.LABELS, event)
            # A second of margin: the delivery report of a timed-out message arrives just after its timeout.
            bus.flush_or_raise(self._producer, timeout=self._timeout_s + 1)
        finally:
            self._lock.release()
