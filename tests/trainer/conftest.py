"""Factories of a small synthetic corpus: short English pages and sentiment labels, positive and negative."""

from __future__ import annotations

from datetime import UTC, datetime
from hashlib import sha256

import pytest

from streams.records import LabelRecorded, PageCleaned, SentimentLabel

SUBJECTS = [
    "the park",
    "the new cafe",
    "the city library",
    "the river walk",
    "the night market",
    "the train station",
    "the museum",
    "the bakery",
    "the football match",
    "the concert",
    "the old bridge",
    "the school fair",
    "the garden show",
    "the harbour",
    "the bookshop",
]
POSITIVE = [
    "It was wonderful and everyone loved it.",
    "The staff were kind and the mood was happy.",
    "We had a great time and would gladly return.",
    "Bright, friendly and full of joy.",
    "A lovely place with excellent service.",
]
NEGATIVE = [
    "It was awful and everyone was angry.",
    "The staff were rude and the mood was grim.",
    "We had a terrible time and will never return.",
    "Dark, dirty and full of complaints.",
    "A dreadful place with poor service.",
]


def pages(count: int = 30, crawl_id: str = "test-crawl") -> list[PageCleaned]:
    made = []
    for i in range(count):
        subject = SUBJECTS[i % len(SUBJECTS)]
        mood = POSITIVE if i % 2 == 0 else NEGATIVE
        text = f"We visited {subject} on day {i}. " + " ".join(mood[(i + k) % len(mood)] for k in range(4))
        made.append(
            PageCleaned(
                url=f"http://example.test/{crawl_id}/page-{i}",
                domain="example.test",
                title=f"A visit to {subject}",
                summary=mood[i % len(mood)] if i % 3 else "",
                text=text,
                language="en",
                content_sha256=sha256(text.encode()).hexdigest(),
                fetched_at=datetime(2025, 1, 1, tzinfo=UTC),
                crawl_id=crawl_id,
            )
        )
    return made


def sentiment_labels(count: int = 60, prefix: str = "test") -> list[LabelRecorded]:
    made = []
    for i in range(count):
        positive = i % 2 == 0
        mood = POSITIVE if positive else NEGATIVE
        subject = SUBJECTS[i % len(SUBJECTS)]
        made.append(
            LabelRecorded(
                label_id=f"{prefix}:label:{i}",
                source="doccano",
                annotator="tester",
                label=SentimentLabel(
                    text=f"About {subject}: {mood[i % len(mood)]} {mood[(i + 2) % len(mood)]}",
                    sentiment="positive" if positive else "negative",
                ),
            )
        )
    return made


@pytest.fixture(scope="session")
def make_pages():
    return pages


@pytest.fixture(scope="session")
def make_labels():
    return sentiment_labels
