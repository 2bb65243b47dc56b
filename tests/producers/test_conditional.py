"""Validators of a fetched page and the conditional GET headers they lead to."""

from __future__ import annotations

from producers.conditional import (
    Validators,
    conditional_headers,
    content_hash,
    validators_of,
)


def test_a_new_url_gets_no_conditional_headers() -> None:
    assert conditional_headers(None) == {}


def test_a_known_url_sends_back_its_validators() -> None:
    seen = validators_of(
        {"etag": '"v1"', "last-modified": "Sun, 22 Nov 2026 04:00:00 GMT"}, "<p>x</p>", ["http://a.test/b"]
    )
    assert conditional_headers(seen) == {"If-None-Match": '"v1"', "If-Modified-Since": "Sun, 22 Nov 2026 04:00:00 GMT"}
    assert seen.links == ("http://a.test/b",)


def test_a_page_without_validators_is_still_known_by_its_hash() -> None:
    seen = validators_of({}, "<p>x</p>", [])
    assert conditional_headers(seen) == {}
    assert seen == Validators(None, None, content_hash("<p>x</p>"), ())
    assert content_hash("<p>x</p>") != content_hash("<p>y</p>")
