"""doccano sink: each clean page feeds two projects, batch by batch.

- sentiment: the page's passages become examples to classify;
- expansions (seq2seq): the page's title and summary become one example, with the
  page's body proposed as its text (a text annotation by the admin user) for
  people to review and correct.

Pages marked `near_duplicate_of` another are skipped: people would label the same
text twice. Each example is created once: its key (`passage_key`, or
`expansion_key` per page) is kept in the example's meta, the keys already in the
projects are loaded at setup, and known keys are skipped. After an outage the keys
are loaded again, since a request that timed out may still have created its
example; an expansion found that way gets its proposal if it has none yet.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

import structlog

from consumers.doccano_client import DoccanoClient, DoccanoError, ensure_expansion_project, ensure_sentiment_project
from consumers.passages import split_passages
from ctrlgpt import secrets
from ctrlgpt.lifecycle import stop_on_signals
from ctrlgpt.settings import Settings
from streams import groups, topics
from streams.bus import Received, RecordRejected, ServiceUnavailable, run_sink
from streams.records import PageCleaned, Stage

__all__ = ["PassageSink", "expansion_example", "expansion_key", "main", "passage_meta"]

log = structlog.get_logger()

STAGE: Stage = "doccano"


def passage_meta(page: PageCleaned, index: int, key: str) -> dict[str, object]:
    return {"url": page.url, "title": page.title, "passage_key": key, "passage_index": index, "crawl_id": page.crawl_id}


def expansion_key(url: str) -> str:
    """One expansion example per page (URL), whatever its text became since."""
    return hashlib.sha256(f"expansion\n{url}".encode()).hexdigest()


def expansion_example(page: PageCleaned) -> tuple[str, dict[str, object]]:
    """The short text people expand (title, then summary) and the example's meta."""
    short = "\n\n".join(part for part in (page.title.strip(), page.summary.strip()) if part)
    meta = {"url": page.url, "title": page.title, "expansion_key": expansion_key(page.url), "crawl_id": page.crawl_id}
    return short, meta


class PassageSink:
    def __init__(
        self, *, doccano_url: str, username: str, password: str, project_name: str, expansion_project_name: str
    ) -> None:
        self._client = DoccanoClient(doccano_url, username, password)
        self._project_name = project_name
        self._expansion_project_name = expansion_project_name
        self._project_id: int | None = None
        self._expansion_project_id: int | None = None
        self._known_keys: set[str] = set()
        # Expansions found in doccano at setup, not yet known to carry their proposal: key -> example id.
        self._unverified_expansions: dict[str, int] = {}
        self._done_expansions: set[str] = set()

    @property
    def project_id(self) -> int | None:
        return self._project_id

    @property
    def expansion_project_id(self) -> int | None:
        return self._expansion_project_id

    def setup(self) -> None:
        self._client.login()
        project = ensure_sentiment_project(self._client, self._project_name)
        expansion_project_id = ensure_expansion_project(self._client, self._expansion_project_name)
        self._known_keys = {
            key for example in self._client.iter_examples(project.id) if (key := example["meta"].get("passage_key"))
        }
        self._unverified_expansions = {
            key: example["id"]
            for example in self._client.iter_examples(expansion_project_id)
            if (key := example["meta"].get("expansion_key")) and key not in self._done_expansions
        }
        self._project_id = project.id
        self._expansion_project_id = expansion_project_id
        log.info(
            "doccano.sink_ready",
            project=self._project_name,
            project_id=project.id,
            examples=len(self._known_keys),
            expansion_project=self._expansion_project_name,
            expansion_project_id=expansion_project_id,
            expansions=len(self._unverified_expansions) + len(self._done_expansions),
        )

    def close(self) -> None:
        self._client.close()

    def write(self, batch: list[Received]) -> None:
        if self._project_id is None:
            self._set_up_again()
        # PAGES_CLEAN decodes to PageCleaned only (streams.topics).
        pages = [cast(PageCleaned, received.record) for received in batch]
        originals = [page for page in pages if page.near_duplicate_of is None]
        try:
            created = sum(self._write_passages(page) for page in originals)
            expansions = sum(self._write_expansion(page) for page in originals)
        except ServiceUnavailable:
            self._project_id = None
            raise
        log.info(
            "doccano.examples_created",
            pages=len(batch),
            near_duplicates=len(pages) - len(originals),
            examples=created,
            expansions=expansions,
        )

    def _set_up_again(self) -> None:
        try:
            self.setup()
        except DoccanoError as exc:
            # Not the records' fault: wait (with the bus's backoff) rather than dead-letter them.
            raise ServiceUnavailable(f"doccano setup failed: {exc}") from exc

    def _write_passages(self, page: PageCleaned) -> int:
        project_id = self._project_id
        created = 0
        for passage in split_passages(page.url, page.text):
            if passage.key in self._known_keys:
                continue
            with _refusal_is_the_records(f"passage {passage.index} of {page.url}"):
                self._client.create_example(project_id, passage.text, passage_meta(page, passage.index, passage.key))
            self._known_keys.add(passage.key)
            created += 1
        return created

    def _write_expansion(self, page: PageCleaned) -> int:
        project_id = self._expansion_project_id
        key = expansion_key(page.url)
        if key in self._done_expansions:
            return 0
        with _refusal_is_the_records(f"the expansion of {page.url}"):
            example_id = self._unverified_expansions.get(key)
            if example_id is None:
                short, meta = expansion_example(page)
                example_id = self._client.create_example(project_id, short, meta)["id"]
                self._unverified_expansions[key] = example_id
            if not self._client.text_labels(project_id, example_id):
                # doccano trims a text annotation's ends anyway: send what it will keep.
                self._client.add_text_label(project_id, example_id, page.text.strip())
        del self._unverified_expansions[key]
        self._done_expansions.add(key)
        return 1


@contextmanager
def _refusal_is_the_records(what: str) -> Iterator[None]:
    """doccano refusing a record's data dead-letters that record; refusing our credentials waits for a fix."""
    try:
        yield
    except DoccanoError as exc:
        if exc.status in (401, 403):
            raise ServiceUnavailable(f"doccano refused our credentials: {exc}") from exc
        raise RecordRejected(f"doccano refused {what}: {exc}") from exc


def main(settings: Settings, args: argparse.Namespace) -> int:
    stop = stop_on_signals()
    sink = PassageSink(
        doccano_url=settings.doccano_url,
        username=settings.doccano_username,
        password=secrets.load_or_create(settings.secrets_file).doccano_password,
        project_name=settings.doccano_project,
        expansion_project_name=settings.doccano_expansion_project,
    )
    run_sink(settings, sink, group=groups.DOCCANO_SINK, topic=topics.PAGES_CLEAN, stage=STAGE, stop=stop)
    return 0
