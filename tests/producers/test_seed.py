"""Seed requests: one normalized depth-0 request per distinct URL."""

from __future__ import annotations

import pytest

from producers.seed import seed_requests


def test_seed_requests_are_normalized_deduplicated_and_scoped() -> None:
    requests = seed_requests(
        ["HTTP://Site.test/#top", "http://site.test/", "https://other.test/x"],
        crawl_id="c9",
        max_depth=1,
        allowed_domains=["CDN.test"],
    )
    assert [r.url for r in requests] == ["http://site.test/", "https://other.test/x"]
    assert all(r.crawl_id == "c9" and r.depth == 0 and r.max_depth == 1 and r.source == "seed" for r in requests)
    assert all(r.allowed_domains == ["cdn.test"] for r in requests)


def test_seeds_that_spell_one_page_twice_are_one_request_in_its_first_spelling() -> None:
    requests = seed_requests(
        ["http://site.test/a/../café?flag", "http://site.test/caf%C3%A9?flag=", "http://site.test/./caf%c3%a9?flag"],
        crawl_id="c",
        max_depth=1,
        allowed_domains=[],
    )
    assert [r.url for r in requests] == ["http://site.test/caf%C3%A9?flag"]


def test_seed_refuses_a_url_that_is_not_http() -> None:
    with pytest.raises(ValueError, match="ftp://x.test/"):
        seed_requests(["http://ok.test/", "ftp://x.test/"], crawl_id="c", max_depth=1, allowed_domains=[])


def test_seed_requests_carry_the_fetch_mode_and_page_cap() -> None:
    (request,) = seed_requests(
        ["http://ok.test/"], crawl_id="c", max_depth=1, allowed_domains=[], fetch_mode="http", max_pages=5
    )
    assert request.fetch_mode == "http" and request.max_pages == 5
    (default,) = seed_requests(["http://ok.test/"], crawl_id="c", max_depth=1, allowed_domains=[])
    assert default.fetch_mode == "browser" and default.max_pages is None
