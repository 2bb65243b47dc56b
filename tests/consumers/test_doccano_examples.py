"""What a clean page becomes in the expansion project (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from consumers.doccano_sink import expansion_example, expansion_key
from streams.records import PageCleaned


def page(url: str, *, title: str = " Harbor festival ", summary: str = "A festival. ") -> PageCleaned:
    return PageCleaned(
        url=url,
        domain="news.test",
        title=title,
        summary=summary,
        text="The harbor festival drew a happy crowd.",
        language="en",
        content_sha256="0" * 64,
        fetched_at=datetime.now(UTC),
        crawl_id="test",
    )


def test_the_short_text_is_the_title_then_the_summary() -> None:
    short, meta = expansion_example(page("https://news.test/a.html"))
    assert short == "Harbor festival\n\nA festival."
    assert meta == {
        "url": "https://news.test/a.html",
        "title": " Harbor festival ",
        "expansion_key": expansion_key("https://news.test/a.html"),
        "crawl_id": "test",
    }


def test_a_page_without_summary_is_its_title_alone() -> None:
    assert expansion_example(page("https://news.test/a.html", summary=""))[0] == "Harbor festival"


def test_the_key_is_one_per_url() -> None:
    assert expansion_key("https://news.test/a.html") == expansion_key("https://news.test/a.html")
    assert expansion_key("https://news.test/a.html") != expansion_key("https://news.test/b.html")
