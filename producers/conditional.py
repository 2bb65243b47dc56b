"""Re-crawl rules (RFC 9110 §13): the validators a page came with, and the conditional GET they allow.

A page is unchanged when the server says so (304) or when its HTML hashes the same as
last time (many servers send no validators at all); either way it is not published again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Validators", "conditional_headers", "content_hash", "validators_of"]


@dataclass(frozen=True)
class Validators:
    """What is remembered of a URL's last fetch, across crawls."""

    etag: str | None
    last_modified: str | None
    content_hash: str
    links: tuple[str, ...]  # an unchanged page still leads to its links


def validators_of(headers: Mapping[str, str], html: str, links: list[str]) -> Validators:
    """The validators of a fetched page; `headers` with lowercase names."""
    return Validators(headers.get("etag"), headers.get("last-modified"), content_hash(html), tuple(links))


def conditional_headers(previous: Validators | None) -> dict[str, str]:
    """If-None-Match / If-Modified-Since for a URL fetched before; none for a new one."""
    if previous is None:
        return {}
    headers = {}
    if previous.etag:
        headers["If-None-Match"] = previous.etag
    if previous.last_modified:
        headers["If-Modified-Since"] = previous.last_modified
    return headers


def content_hash(html: str) -> str:
    return hashlib.sha256(html.encode("utf-8", "surrogatepass")).hexdigest()
