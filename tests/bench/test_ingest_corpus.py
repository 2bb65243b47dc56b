"""The benchmark corpus: deterministic, distinct, cleanable pages; the percentile it reports."""

from __future__ import annotations

import pytest
from ingest_corpus import build_corpus, percentile

from deploy.demo_site import load_articles
from streams.cleaning import clean_page
from streams.records import PageFetched


def test_the_same_seed_gives_the_same_pages_and_another_seed_others() -> None:
    articles = load_articles()
    first = build_corpus(articles, 40, seed=7)
    assert first == build_corpus(articles, 40, seed=7)
    assert [p.html for p in first] != [p.html for p in build_corpus(articles, 40, seed=8)]


def test_pages_are_distinct_and_clean_into_their_title() -> None:
    pages = build_corpus(load_articles(), 30)
    assert len({p.path for p in pages}) == len({p.html for p in pages}) == 30
    for page in pages[:5]:
        url = f"https://bench.example.com{page.path}"
        cleaned = clean_page(PageFetched(url=url, final_url=url, crawl_id="bench", status=200, html=page.html))
        assert cleaned.title == page.title
        assert len(cleaned.text) >= 200


@pytest.mark.parametrize(("q", "expected"), [(0, 1.0), (50, 5.0), (99, 10.0), (100, 10.0)])
def test_percentile_is_the_nearest_rank(q: float, expected: float) -> None:
    assert percentile([float(v) for v in range(10, 0, -1)], q) == expected


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
