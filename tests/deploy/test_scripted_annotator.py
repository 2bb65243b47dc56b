from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from consumers.doccano_client import DoccanoClient, ensure_sentiment_project
from ctrlgpt.settings import Settings
from deploy.demo_site import Article, article_url, load_articles
from deploy.scripted_annotator import (
    ANNOTATOR_USERNAME,
    annotate,
    annotator_password,
    answer_key,
    plan_labels,
)

BASE = "http://127.0.0.1:8090/"


def article(slug: str, sentiment: str) -> Article:
    return Article(slug=slug, title=slug, summary="", sentiment=sentiment, topic="town", paragraphs=("p",))


def test_answer_key_maps_article_urls_to_sentiments() -> None:
    key = answer_key([article("good-news", "positive"), article("bad-news", "negative")], BASE)
    assert key == {
        "http://127.0.0.1:8090/articles/good-news.html": "positive",
        "http://127.0.0.1:8090/articles/bad-news.html": "negative",
    }


def test_plan_labels_matches_urls_and_counts_the_rest() -> None:
    key = answer_key([article("good-news", "positive"), article("bad-news", "negative")], BASE)
    examples = [
        {"id": 1, "meta": {"url": "http://127.0.0.1:8090/articles/bad-news.html"}},
        {"id": 2, "meta": {"url": "HTTP://127.0.0.1:8090/articles/good-news.html#comments"}},
        {"id": 3, "meta": {"url": "http://127.0.0.1:8090/about.html"}},
        {"id": 4, "meta": {}},
    ]
    plan = plan_labels(examples, key)
    assert plan.labels == [(1, "negative"), (2, "positive")]
    assert plan.unmatched == [3, 4]


def test_annotator_password_is_derived_not_stored() -> None:
    password = annotator_password("admin-secret")
    assert password == annotator_password("admin-secret") != annotator_password("other-secret")
    assert len(password) == 64 and "admin-secret" not in password


@pytest.fixture
def project_settings(settings: Settings, doccano: DoccanoClient) -> Iterator[Settings]:
    name = f"ctrlgpt test {uuid.uuid4().hex[:10]}"
    yield settings.with_overrides([f"doccano_project={name}"])
    project = doccano.find_project(name)
    if project is not None:
        doccano.delete_project(project["id"])


@pytest.mark.integration
def test_scripted_annotator_labels_and_confirms_demo_passages_only(
    project_settings: Settings, doccano: DoccanoClient
) -> None:
    project = ensure_sentiment_project(doccano, project_settings.doccano_project)
    good, bad = (next(a for a in load_articles() if a.sentiment == s) for s in ("positive", "negative"))
    examples = {
        "good": doccano.create_example(
            project.id, "Passage one.", {"url": article_url(project_settings.demo_site_url, good.slug)}
        ),
        "bad": doccano.create_example(
            project.id, "Passage two.", {"url": article_url(project_settings.demo_site_url, bad.slug)}
        ),
        "other": doccano.create_example(project.id, "Passage three.", {"url": "https://elsewhere.test/page.html"}),
        "taken": doccano.create_example(
            project.id, "Passage four.", {"url": article_url(project_settings.demo_site_url, bad.slug)}
        ),
    }
    person_label = doccano.add_category(project.id, examples["taken"]["id"], project.label_ids["positive"])

    report = annotate(project_settings, limit=10)
    assert (report.labelled, report.unmatched, report.already_labelled) == (2, 1, 1)

    names = doccano.usernames()
    for key, sentiment in (("good", "positive"), ("bad", "negative")):
        (category,) = doccano.categories(project.id, examples[key]["id"])
        assert (category["label"], names[category["user"]]) == (project.label_ids[sentiment], ANNOTATOR_USERNAME)
    assert doccano.categories(project.id, examples["other"]["id"]) == []
    assert doccano.categories(project.id, examples["taken"]["id"]) == [person_label]
    confirmed = {e["id"] for e in doccano.iter_examples(project.id, confirmed=True)}
    assert confirmed == {examples["good"]["id"], examples["bad"]["id"]}

    assert annotate(project_settings, limit=10).labelled == 0
