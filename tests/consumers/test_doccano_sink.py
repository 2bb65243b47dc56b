"""The doccano sink against the real doccano, in a project of the test's own."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime

import pytest

from consumers.doccano_client import (
    VERDICTS,
    DoccanoClient,
    comparison_text,
    ensure_comparison_project,
    ensure_expansion_project,
)
from consumers.doccano_sink import PassageSink, expansion_key
from consumers.passages import split_passages
from ctrlgpt import secrets
from ctrlgpt.settings import Settings
from streams import topics
from streams.bus import Received, ServiceUnavailable
from streams.records import PageCleaned

pytestmark = pytest.mark.integration


def clean_page(url: str, *, near_duplicate_of: str | None = None) -> PageCleaned:
    paragraphs = [f"Paragraph {i} about the harbor festival, which drew a happy crowd. " * 6 for i in range(5)]
    return PageCleaned(
        url=url,
        domain="news.test",
        title="Harbor festival",
        summary="A festival.",
        text="\n".join(paragraphs),
        language="en",
        content_sha256="0" * 64,
        fetched_at=datetime.now(UTC),
        crawl_id="test",
        near_duplicate_of=near_duplicate_of,
    )


def received(page: PageCleaned) -> Received:
    return Received(page, topics.PAGES_CLEAN.name, 0, 0, page.url.encode(), topics.PAGES_CLEAN.encode(page))


def make_sink(settings: Settings, url: str | None = None) -> PassageSink:
    return PassageSink(
        doccano_url=url or settings.doccano_url,
        username=settings.doccano_username,
        password=secrets.load_or_create(settings.secrets_file).doccano_password,
        project_name=settings.doccano_project,
        expansion_project_name=settings.doccano_expansion_project,
    )


def test_passages_become_examples_once(project_settings: Settings, doccano: DoccanoClient) -> None:
    pages = [clean_page(f"https://news.test/{uuid.uuid4().hex}.html") for _ in range(2)]
    sink = make_sink(project_settings)
    sink.setup()
    sink.write([received(p) for p in pages])

    project_id = sink.project_id
    examples = list(doccano.iter_examples(project_id))
    expected = [passage for p in pages for passage in split_passages(p.url, p.text)]
    assert len(expected) >= 4
    assert sorted(e["meta"]["passage_key"] for e in examples) == sorted(p.key for p in expected)
    first = next(e for e in examples if e["meta"]["passage_key"] == expected[0].key)
    assert first["text"] == expected[0].text
    assert (first["meta"]["url"], first["meta"]["title"]) == (pages[0].url, "Harbor festival")

    sink.write([received(p) for p in pages])
    assert len(list(doccano.iter_examples(project_id))) == len(expected)

    # A restarted sink knows the passages from doccano itself.
    restarted = make_sink(project_settings)
    restarted.setup()
    restarted.write([received(pages[1])])
    assert len(list(doccano.iter_examples(project_id))) == len(expected)
    sink.close()
    restarted.close()


def test_doccano_down_is_service_unavailable(project_settings: Settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    sink = make_sink(project_settings, url=f"http://127.0.0.1:{closed_port}")
    with pytest.raises(ServiceUnavailable):
        sink.setup()
    with pytest.raises(ServiceUnavailable):
        sink.write([received(clean_page("https://news.test/down.html"))])


def test_each_page_becomes_one_expansion_with_its_body_proposed(
    project_settings: Settings, doccano: DoccanoClient
) -> None:
    pages = [clean_page(f"https://news.test/{uuid.uuid4().hex}.html") for _ in range(2)]
    sink = make_sink(project_settings)
    sink.setup()
    sink.write([received(p) for p in pages])
    sink.write([received(pages[0])])

    project_id = sink.expansion_project_id
    examples = list(doccano.iter_examples(project_id))
    assert sorted(e["meta"]["expansion_key"] for e in examples) == sorted(expansion_key(p.url) for p in pages)
    for example in examples:
        assert example["text"] == "Harbor festival\n\nA festival."
        assert [label["text"] for label in doccano.text_labels(project_id, example["id"])] == [pages[0].text.strip()]

    # An example whose proposal was lost (an outage between the two requests) gets it after a restart.
    first = next(e for e in examples if e["meta"]["expansion_key"] == expansion_key(pages[0].url))
    for label in doccano.text_labels(project_id, first["id"]):
        doccano.delete_text_label(project_id, first["id"], label["id"])
    restarted = make_sink(project_settings)
    restarted.setup()
    restarted.write([received(p) for p in pages])
    assert len(list(doccano.iter_examples(project_id))) == 2
    assert [label["text"] for label in doccano.text_labels(project_id, first["id"])] == [pages[0].text.strip()]
    sink.close()
    restarted.close()


def test_near_duplicates_are_not_sent_to_labeling(project_settings: Settings, doccano: DoccanoClient) -> None:
    original = clean_page(f"https://news.test/{uuid.uuid4().hex}.html")
    copy = clean_page(f"https://mirror.test/{uuid.uuid4().hex}.html", near_duplicate_of=original.url)
    sink = make_sink(project_settings)
    sink.setup()
    sink.write([received(original), received(copy)])
    assert {e["meta"]["url"] for e in doccano.iter_examples(sink.project_id)} == {original.url}
    assert {e["meta"]["url"] for e in doccano.iter_examples(sink.expansion_project_id)} == {original.url}
    sink.close()


def test_projects_are_created_once_with_their_types(project_settings: Settings, doccano: DoccanoClient) -> None:
    expansion_id = ensure_expansion_project(doccano, project_settings.doccano_expansion_project)
    assert ensure_expansion_project(doccano, project_settings.doccano_expansion_project) == expansion_id
    assert doccano.find_project(project_settings.doccano_expansion_project)["project_type"] == "Seq2seq"

    comparisons = ensure_comparison_project(doccano, project_settings.doccano_comparison_project)
    assert ensure_comparison_project(doccano, project_settings.doccano_comparison_project) == comparisons
    assert tuple(comparisons.label_ids) == VERDICTS
    project = doccano.find_project(project_settings.doccano_comparison_project)
    assert (project["project_type"], project["single_class_classification"]) == ("DocumentClassification", True)


def test_comparison_text_shows_the_prompt_and_both_generations() -> None:
    assert comparison_text("Harbor", "a festival", "a storm") == "Harbor\n\nA: a festival\n\nB: a storm"
