"""Index sink: clean pages -> Elasticsearch, one document per URL.

Pages live in a versioned index (`<alias>-v1`) behind the alias `settings.es_index`;
readers use the alias, so a rebuilt index can replace the old one by moving the
alias, without downtime. The document id is the URL's sha256: indexing a page
again overwrites it, never duplicates it.
"""

from __future__ import annotations

import argparse
import hashlib
from typing import Any, cast

import structlog
from elasticsearch import ApiError, BadRequestError, Elasticsearch, TransportError, helpers

from ctrlgpt.lifecycle import stop_on_signals
from ctrlgpt.settings import Settings
from streams import topics
from streams.bus import Received, RecordRejected, ServiceUnavailable, run_sink
from streams.records import PageCleaned, Stage

__all__ = ["PageIndexSink", "document_id", "has_english_analyzer", "index_template", "main", "page_document"]

log = structlog.get_logger()

STAGE: Stage = "index"


def document_id(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def page_document(page: PageCleaned) -> dict[str, Any]:
    return {
        "url": page.url,
        "domain": page.domain,
        "title": page.title,
        "summary": page.summary,
        "text": page.text,
        "language": page.language,
        "content_sha256": page.content_sha256,
        "crawl_id": page.crawl_id,
        "fetched_at": page.fetched_at.isoformat(),
        "published": page.published.isoformat() if page.published else None,
        "near_duplicate_of": page.near_duplicate_of,
        "event_id": page.event_id,
    }


# An Elasticsearch without the analysis-common module (the integ-test-zip the local
# deployment runs) has no language analyzers: the closest it offers is standard
# tokens, lower-cased, without English stop words, and no stemming.
UNSTEMMED_ENGLISH = {"english_unstemmed": {"type": "custom", "tokenizer": "standard", "filter": ["lowercase", "stop"]}}


def index_template(alias: str, *, english_analyzer: bool = True) -> dict[str, Any]:
    """The template every `<alias>-v<N>` index is created from."""
    analyzer = "english" if english_analyzer else next(iter(UNSTEMMED_ENGLISH))
    english_text = {"type": "text", "analyzer": analyzer}
    index_settings: dict[str, Any] = {"number_of_shards": 1, "number_of_replicas": 0}
    if not english_analyzer:
        index_settings["analysis"] = {"analyzer": UNSTEMMED_ENGLISH}
    return {
        "index_patterns": [f"{alias}-v*"],
        "priority": 200,
        "template": {
            "settings": index_settings,
            "mappings": {
                # strict: a document with a field nobody mapped is refused, not guessed at.
                "dynamic": "strict",
                "properties": {
                    "url": {"type": "keyword"},
                    "domain": {"type": "keyword"},
                    "title": {**english_text, "fields": {"raw": {"type": "keyword", "ignore_above": 512}}},
                    "summary": english_text,
                    "text": english_text,
                    "language": {"type": "keyword"},
                    "content_sha256": {"type": "keyword"},
                    "crawl_id": {"type": "keyword"},
                    "fetched_at": {"type": "date"},
                    "published": {"type": "date"},
                    "near_duplicate_of": {"type": "keyword"},
                    "event_id": {"type": "keyword"},
                },
            },
        },
        "_meta": {"owner": "ctrlgpt", "doc": "clean pages; see consumers/search_index.py"},
    }


class PageIndexSink:
    """Bulk-indexes `PageCleaned` records; `setup()` creates the template, index and alias when missing."""

    def __init__(self, *, es_url: str, alias: str, request_timeout: float = 30.0) -> None:
        self._es_url = es_url
        self._alias = alias
        self._request_timeout = request_timeout
        self._es: Elasticsearch | None = None

    @property
    def first_index(self) -> str:
        return f"{self._alias}-v1"

    def setup(self) -> None:
        es = Elasticsearch(self._es_url, request_timeout=self._request_timeout)
        try:
            self._ensure_index(es)
        except TransportError as exc:
            es.close()
            raise ServiceUnavailable(f"Elasticsearch at {self._es_url} unreachable: {exc}") from exc
        except ApiError as exc:
            es.close()
            if _is_transient(exc.meta.status):
                raise ServiceUnavailable(f"Elasticsearch setup answered {exc.meta.status}: {exc}") from exc
            raise
        self._es = es

    def close(self) -> None:
        if self._es is not None:
            self._es.close()
            self._es = None

    def _ensure_index(self, es: Elasticsearch) -> None:
        template_name = f"{self._alias}-pages"
        english = has_english_analyzer(es)
        if not english:
            log.warning("es.no_english_analyzer", detail="node lacks analysis-common: text is indexed unstemmed")
        template = index_template(self._alias, english_analyzer=english)
        # Put every time: a newer ctrlgpt's template applies to the next index built from it.
        es.indices.put_index_template(name=template_name, **template)
        if es.indices.exists(index=self._alias) and not es.indices.exists_alias(name=self._alias):
            raise RuntimeError(f"{self._alias!r} is a concrete index, not an alias: reindex it into {self.first_index}")
        if not es.indices.exists_alias(name=self._alias):
            try:
                es.indices.create(index=self.first_index, aliases={self._alias: {"is_write_index": True}})
                log.info("es.index_created", index=self.first_index, alias=self._alias)
            except ApiError as exc:
                # Two sinks starting at once: the other one created it.
                if exc.meta.status != 400 or exc.error != "resource_already_exists_exception":
                    raise
        # Fields added since the index was created: the mapping is strict, so they must be mapped
        # before the first document that carries them (adding fields never needs a reindex).
        es.indices.put_mapping(index=self._alias, **template["template"]["mappings"])

    def write(self, batch: list[Received]) -> None:
        if self._es is None:
            self.setup()
        es = self._es
        actions = [
            {"_op_type": "index", "_index": self._alias, "_id": document_id(page.url), "_source": page_document(page)}
            # PAGES_CLEAN decodes to PageCleaned only (streams.topics).
            for page in (cast(PageCleaned, received.record) for received in batch)
        ]
        try:
            results = list(helpers.streaming_bulk(es, actions, raise_on_error=False, max_retries=0))
        except TransportError as exc:
            raise ServiceUnavailable(f"Elasticsearch at {self._es_url} unreachable: {exc}") from exc
        except ApiError as exc:
            # Refused credentials are the deployment's fault, not the records': wait for a fix, lose nothing.
            if _is_transient(exc.meta.status) or exc.meta.status in (401, 403):
                raise ServiceUnavailable(f"Elasticsearch bulk answered {exc.meta.status}: {exc}") from exc
            raise
        failures = [item["index"] for ok, item in results if not ok]
        transient = sorted({status for f in failures if _is_transient(status := f.get("status", 500))})
        if transient:
            raise ServiceUnavailable(f"Elasticsearch refused {len(failures)} documents for now: status {transient}")
        if failures:
            # The bus writes each record of the batch alone and dead-letters the ones rejected again.
            reasons = "; ".join(
                f"{f.get('_id')}: {f.get('error', {}).get('reason', f.get('error'))}" for f in failures[:5]
            )
            raise RecordRejected(f"Elasticsearch rejected {len(failures)} of {len(actions)} documents: {reasons}")
        log.info("es.indexed", documents=len(actions), alias=self._alias)


def has_english_analyzer(es: Elasticsearch) -> bool:
    try:
        es.indices.analyze(analyzer="english", text="probe")
    except BadRequestError:
        return False
    return True


def _is_transient(status: int) -> bool:
    return status == 429 or status >= 500


def main(settings: Settings, args: argparse.Namespace) -> int:
    stop = stop_on_signals()
    sink = PageIndexSink(es_url=settings.es_url, alias=settings.es_index)
    run_sink(settings, sink, group=settings.es_sink_group, topic=topics.PAGES_CLEAN, stage=STAGE, stop=stop)
    return 0
