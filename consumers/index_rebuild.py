"""Rebuild the pages index behind its alias without downtime (after a change to the index template).

The current template is put first, then a new `<alias>-v<N+1>` is created from it and
filled from the index the alias points to (scroll + bulk: the local node has no
`_reindex` module). One alias request then moves readers and the index sink to the
new index. Pages the sink wrote to the old index during the copy are copied again
with `create`, so a newer document already in the new index is never overwritten;
then the old index is deleted. Searches never see an empty or a missing alias.
"""

from __future__ import annotations

import argparse
import re

import structlog
from elasticsearch import Elasticsearch, helpers

from consumers.search_index import PageIndexSink, has_english_analyzer, index_template
from ctrlgpt.settings import Settings

__all__ = ["main", "next_index", "rebuild"]

log = structlog.get_logger()

CHUNK = 500


def next_index(alias: str, current: str) -> str:
    """`<alias>-v3` -> `<alias>-v4`."""
    matched = re.fullmatch(re.escape(alias) + r"-v(\d+)", current)
    if matched is None:
        raise ValueError(f"{current!r} is not a versioned index of {alias!r} (<alias>-v<N>)")
    return f"{alias}-v{int(matched.group(1)) + 1}"


def rebuild(es: Elasticsearch, alias: str, *, keep_old: bool = False) -> str:
    """Move `alias` to a rebuilt index; returns the new index's name."""
    current = _write_index(es, alias)
    new = next_index(alias, current)
    es.indices.put_index_template(
        name=f"{alias}-pages", **index_template(alias, english_analyzer=has_english_analyzer(es))
    )
    es.indices.create(index=new)
    copied = _copy(es, current, new, op_type="index")
    es.indices.update_aliases(
        actions=[
            {"remove": {"index": current, "alias": alias}},
            {"add": {"index": new, "alias": alias, "is_write_index": True}},
        ]
    )
    late = _copy(es, current, new, op_type="create")
    log.info("es.index_rebuilt", alias=alias, old=current, new=new, copied=copied, copied_late=late)
    if not keep_old:
        es.indices.delete(index=current)
    return new


def _write_index(es: Elasticsearch, alias: str) -> str:
    indices = es.indices.get_alias(name=alias).body
    writers = [name for name, spec in indices.items() if spec["aliases"][alias].get("is_write_index")]
    if len(indices) == 1:
        return next(iter(indices))
    if len(writers) != 1:
        raise RuntimeError(f"alias {alias!r} points to {sorted(indices)} with no single write index")
    return writers[0]


def _copy(es: Elasticsearch, source: str, target: str, *, op_type: str) -> int:
    es.indices.refresh(index=source)
    actions = (
        {"_op_type": op_type, "_index": target, "_id": hit["_id"], "_source": hit["_source"]}
        for hit in helpers.scan(es, index=source, size=CHUNK)
    )
    copied = 0
    for ok, item in helpers.streaming_bulk(es, actions, chunk_size=CHUNK, raise_on_error=False, max_retries=3):
        result = item[op_type]
        if ok:
            copied += 1
        elif not (op_type == "create" and result.get("status") == 409):
            # A conflict on `create` is a newer document already there; anything else is a failed rebuild.
            raise RuntimeError(f"copying {result.get('_id')} into {target} failed: {result.get('error')}")
    es.indices.refresh(index=target)
    return copied


def main(settings: Settings, args: argparse.Namespace) -> int:
    # The alias and its first index exist before anything is rebuilt (as the sink makes them).
    sink = PageIndexSink(es_url=settings.es_url, alias=settings.es_index)
    sink.setup()
    sink.close()
    with Elasticsearch(settings.es_url, request_timeout=120) as es:
        new = rebuild(es, settings.es_index)
    print(f"{settings.es_index} -> {new}")
    return 0
