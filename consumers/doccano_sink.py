"""doccano sink: the passages of each clean page become examples of the sentiment project.

Each passage is created once: its `passage_key` (see `consumers.passages`) is kept
in the example's meta, the keys already in the project are loaded at setup, and
known keys are skipped. After an outage the keys are loaded again, since a
request that timed out may still have created its example.
"""

from __future__ import annotations

import argparse
from typing import cast

import structlog

from consumers.doccano_client import DoccanoClient, DoccanoError, ensure_sentiment_project
from consumers.passages import split_passages
from ctrlgpt import secrets
from ctrlgpt.lifecycle import stop_on_signals
from ctrlgpt.settings import Settings
from streams import topics
from streams.bus import Received, RecordRejected, ServiceUnavailable, run_sink
from streams.records import PageCleaned

__all__ = ["PassageSink", "passage_meta", "main"]

log = structlog.get_logger()

STAGE = "doccano"
GROUP = "ctrlgpt-doccano"


def passage_meta(page: PageCleaned, index: int, key: str) -> dict[str, object]:
    return {"url": page.url, "title": page.title, "passage_key": key, "passage_index": index, "crawl_id": page.crawl_id}


class PassageSink:
    def __init__(self, *, doccano_url: str, username: str, password: str, project_name: str) -> None:
        self._client = DoccanoClient(doccano_url, username, password)
        self._project_name = project_name
        self._project_id: int | None = None
        self._known_keys: set[str] = set()

    @property
    def project_id(self) -> int | None:
        return self._project_id

    def setup(self) -> None:
        self._client.login()
        project = ensure_sentiment_project(self._client, self._project_name)
        self._known_keys = {
            key for example in self._client.iter_examples(project.id) if (key := example["meta"].get("passage_key"))
        }
        self._project_id = project.id
        log.info(
            "doccano.sink_ready", project=self._project_name, project_id=project.id, examples=len(self._known_keys)
        )

    def close(self) -> None:
        self._client.close()

    def write(self, batch: list[Received]) -> None:
        if self._project_id is None:
            self._set_up_again()
        try:
            # PAGES_CLEAN decodes to PageCleaned only (streams.topics).
            created = sum(self._write_page(cast(PageCleaned, received.record)) for received in batch)
        except ServiceUnavailable:
            self._project_id = None
            raise
        log.info("doccano.examples_created", pages=len(batch), examples=created)

    def _set_up_again(self) -> None:
        try:
            self.setup()
        except DoccanoError as exc:
            # Not the records' fault: wait (with the bus's backoff) rather than dead-letter them.
            raise ServiceUnavailable(f"doccano setup failed: {exc}") from exc

    def _write_page(self, page: PageCleaned) -> int:
        project_id = self._project_id
        created = 0
        for passage in split_passages(page.url, page.text):
            if passage.key in self._known_keys:
                continue
            try:
                self._client.create_example(project_id, passage.text, passage_meta(page, passage.index, passage.key))
            except DoccanoError as exc:
                if exc.status in (401, 403):
                    raise ServiceUnavailable(f"doccano refused our credentials: {exc}") from exc
                raise RecordRejected(f"doccano refused passage {passage.index} of {page.url}: {exc}") from exc
            self._known_keys.add(passage.key)
            created += 1
        return created


def main(settings: Settings, args: argparse.Namespace) -> int:
    stop = stop_on_signals()
    sink = PassageSink(
        doccano_url=settings.doccano_url,
        username=settings.doccano_username,
        password=secrets.load_or_create(settings.secrets_file).doccano_password,
        project_name=settings.doccano_project,
    )
    run_sink(settings, sink, group=GROUP, topic=topics.PAGES_CLEAN, stage=STAGE, stop=stop)
    return 0
