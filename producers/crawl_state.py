"""The crawler's memory, in SQLite: which URLs of a crawl were requested and which were visited,
and, across crawls, each URL's validators for conditional re-fetches.

It survives restarts, so a redelivered request is not fetched again and a link
found twice is requested once. Writes happen only after Kafka acknowledged what
they stand for, so a crash can cause a repeat but never a loss.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from producers.conditional import Validators
from producers.frontier import host_of

__all__ = ["CrawlState"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requested (
    crawl_id TEXT NOT NULL, url TEXT NOT NULL, host TEXT NOT NULL,
    PRIMARY KEY (crawl_id, url)
);
CREATE INDEX IF NOT EXISTS requested_by_host ON requested (crawl_id, host);
CREATE TABLE IF NOT EXISTS visited (
    crawl_id TEXT NOT NULL, url TEXT NOT NULL, outcome TEXT NOT NULL, status INTEGER,
    at TEXT NOT NULL DEFAULT (datetime('now')),
    PRIMARY KEY (crawl_id, url)
);
CREATE TABLE IF NOT EXISTS validators (
    url TEXT PRIMARY KEY, etag TEXT, last_modified TEXT, content_hash TEXT NOT NULL, links TEXT NOT NULL
);
"""


class CrawlState:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.executescript(_SCHEMA)

    def visited(self, crawl_id: str, url: str) -> bool:
        row = self._db.execute("SELECT 1 FROM visited WHERE crawl_id = ? AND url = ?", (crawl_id, url)).fetchone()
        return row is not None

    def known(self, crawl_id: str, urls: Iterable[str]) -> set[str]:
        """The URLs among `urls` already requested in this crawl."""
        urls = list(urls)
        found: set[str] = set()
        for start in range(0, len(urls), 500):  # SQLite caps the number of query parameters
            chunk = urls[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT url FROM requested WHERE crawl_id = ? AND url IN ({marks})", (crawl_id, *chunk)
            )
            found.update(url for (url,) in rows)
        return found

    def requested_per_host(self, crawl_id: str, hosts: Iterable[str]) -> dict[str, int]:
        return {
            host: self._db.execute(
                "SELECT count(*) FROM requested WHERE crawl_id = ? AND host = ?", (crawl_id, host)
            ).fetchone()[0]
            for host in set(hosts)
        }

    def record_visit(
        self,
        crawl_id: str,
        url: str,
        *,
        outcome: str,
        status: int | None,
        requested: Iterable[str] = (),
        validators: Validators | None = None,
    ) -> None:
        """Remember a visit, the URLs it requested and the page's validators (if given), in one transaction."""
        with self._db:
            if validators is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO validators (url, etag, last_modified, content_hash, links) VALUES (?, ?, ?, ?, ?)",
                    (
                        url,
                        validators.etag,
                        validators.last_modified,
                        validators.content_hash,
                        json.dumps(validators.links),
                    ),
                )
            self._db.executemany(
                "INSERT OR IGNORE INTO requested (crawl_id, url, host) VALUES (?, ?, ?)",
                [(crawl_id, u, host_of(u)) for u in (url, *requested)],
            )
            self._db.execute(
                "INSERT OR REPLACE INTO visited (crawl_id, url, outcome, status) VALUES (?, ?, ?, ?)",
                (crawl_id, url, outcome, status),
            )

    def validators(self, url: str) -> Validators | None:
        row = self._db.execute(
            "SELECT etag, last_modified, content_hash, links FROM validators WHERE url = ?", (url,)
        ).fetchone()
        return None if row is None else Validators(row[0], row[1], row[2], tuple(json.loads(row[3])))

    def outcomes(self, crawl_id: str) -> dict[str, int]:
        """How many visits of a crawl ended how (fetched, unchanged, dead-lettered)."""
        rows = self._db.execute(
            "SELECT outcome, count(*) FROM visited WHERE crawl_id = ? GROUP BY outcome", (crawl_id,)
        )
        return dict(rows.fetchall())

    def close(self) -> None:
        self._db.close()
