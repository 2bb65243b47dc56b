"""The demo website: its articles file and the pages, robots.txt and broken page it serves."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import lxml.html
import pytest

from deploy import demo_site
from producers.frontier import extract_links


@pytest.fixture(scope="module")
def site() -> Iterator[demo_site.DemoSite]:
    running = demo_site.serve(0)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def articles() -> list[demo_site.Article]:
    return demo_site.load_articles()


def test_articles_are_balanced_and_well_formed(articles: list[demo_site.Article]) -> None:
    assert len(articles) == 30
    assert Counter(a.sentiment for a in articles) == {"positive": 15, "negative": 15}
    assert len({a.slug for a in articles}) == 30
    assert len({a.title for a in articles}) == 30
    for article in articles:
        assert article.slug.replace("-", "").isalnum() and article.slug != demo_site.BROKEN_SLUG
        assert article.title and article.topic
        assert article.summary.endswith(".") and len(article.summary.split()) >= 8
        assert 4 <= len(article.paragraphs) <= 6, article.slug
        for paragraph in article.paragraphs:
            assert 60 <= len(paragraph.split()) <= 120, (article.slug, paragraph[:40])
            assert "lorem" not in paragraph.lower()


def test_every_topic_has_both_sentiments(articles: list[demo_site.Article]) -> None:
    by_topic: dict[str, set[str]] = {}
    for article in articles:
        by_topic.setdefault(article.topic, set()).add(article.sentiment)
    assert len(by_topic) >= 5
    assert all(sentiments == {"positive", "negative"} for sentiments in by_topic.values()), by_topic


def test_article_url() -> None:
    assert demo_site.article_url("http://127.0.0.1:8090/", "a-b") == "http://127.0.0.1:8090/articles/a-b.html"
    assert demo_site.article_url("http://127.0.0.1:8090", "a-b") == "http://127.0.0.1:8090/articles/a-b.html"


def test_index_links_every_article_and_the_broken_page(
    site: demo_site.DemoSite, articles: list[demo_site.Article]
) -> None:
    response = httpx.get(site.url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    links = set(extract_links(response.text, site.url))
    assert {demo_site.article_url(site.url, a.slug) for a in articles} <= links
    assert demo_site.article_url(site.url, demo_site.BROKEN_SLUG) in links


def test_an_article_page_carries_title_summary_and_paragraphs(
    site: demo_site.DemoSite, articles: list[demo_site.Article]
) -> None:
    article = articles[7]
    response = httpx.get(demo_site.article_url(site.url, article.slug))
    assert response.status_code == 200
    doc = lxml.html.fromstring(response.text)
    assert doc.findtext(".//title") == article.title
    assert doc.findtext(".//h1") == article.title
    assert doc.xpath("string(//meta[@name='description']/@content)") == article.summary
    assert doc.xpath("string(//p[@class='lead'])") == article.summary
    assert [p.text_content() for p in doc.xpath("//article/p")] == list(article.paragraphs)
    for boilerplate in ("//nav", "//header", "//footer", "//aside", "//*[@id='cookie-banner']"):
        assert doc.xpath(boilerplate), boilerplate


def test_robots_txt_disallows_only_private(site: demo_site.DemoSite) -> None:
    response = httpx.get(site.url + "robots.txt")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    assert "Disallow: /private/" in lines and "Crawl-delay: 0" in lines
    assert [line for line in lines if line.startswith("Disallow")] == ["Disallow: /private/"]


def test_the_broken_page_always_answers_500(site: demo_site.DemoSite) -> None:
    for _ in range(2):
        assert httpx.get(demo_site.article_url(site.url, demo_site.BROKEN_SLUG)).status_code == 500


def test_unknown_paths_are_404(site: demo_site.DemoSite) -> None:
    assert httpx.get(site.url + "articles/no-such-article.html").status_code == 404
    assert httpx.get(site.url + "nothing-here").status_code == 404
