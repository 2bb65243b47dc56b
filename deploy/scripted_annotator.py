"""SCRIPTED ANNOTATOR: labels passages in doccano by script, standing in for a person in the demo.

It is not a model and not a person. It logs in to doccano as its own user
(`scripted-annotator`, so its labels are told apart from people's) and goes through
the same REST API a browser does: pick a label, then mark the example confirmed.
The label comes from the demo site's answer key: the sentiment of the article the
passage was crawled from (`deploy.demo_site.load_articles()`). Passages of any other
page, and passages someone already labelled, are skipped and counted.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import structlog

from consumers.doccano_client import ClassificationProject, DoccanoClient, ensure_sentiment_project
from ctrlgpt import secrets
from ctrlgpt.settings import Settings
from deploy.demo_site import Article, article_url, load_articles

__all__ = [
    "ANNOTATOR_USERNAME",
    "LabelPlan",
    "annotate",
    "annotator_password",
    "annotator_session",
    "answer_key",
    "main",
    "plan_labels",
]

log = structlog.get_logger()

ANNOTATOR_USERNAME = "scripted-annotator"


@dataclass(frozen=True)
class LabelPlan:
    labels: list[tuple[int, str]] = field(default_factory=list)  # (example id, sentiment)
    unmatched: list[int] = field(default_factory=list)  # example ids of pages the answer key does not know


def normalise_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", parts.query, ""))


def answer_key(articles: Iterable[Article], base_url: str) -> dict[str, str]:
    """Article URL -> its sentiment, for the demo site at `base_url`."""
    return {normalise_url(article_url(base_url, a.slug)): a.sentiment for a in articles}


def plan_labels(examples: Iterable[Mapping[str, Any]], answers: Mapping[str, str]) -> LabelPlan:
    plan = LabelPlan()
    for example in examples:
        url = (example.get("meta") or {}).get("url")
        sentiment = answers.get(normalise_url(url)) if url else None
        if sentiment is None:
            plan.unmatched.append(example["id"])
        else:
            plan.labels.append((example["id"], sentiment))
    return plan


def annotator_password(doccano_password: str) -> str:
    """Derived from the admin's secret, so that no second secret has to be kept."""
    return hmac.new(doccano_password.encode(), ANNOTATOR_USERNAME.encode(), hashlib.sha256).hexdigest()


def ensure_annotator(admin: DoccanoClient, project_id: int, password: str) -> None:
    """Create the scripted annotator's user and make it an annotator of the project, if not yet."""
    users = {name: user_id for user_id, name in admin.usernames().items()}
    if ANNOTATOR_USERNAME not in users:
        users[ANNOTATOR_USERNAME] = admin.create_user(ANNOTATOR_USERNAME, password)["id"]
        log.info("annotator.user_created", username=ANNOTATOR_USERNAME)
    if all(member["user"] != users[ANNOTATOR_USERNAME] for member in admin.members(project_id)):
        admin.add_member(project_id, users[ANNOTATOR_USERNAME], "annotator")


@dataclass
class AnnotationReport:
    labelled: int = 0
    unmatched: int = 0
    already_labelled: int = 0


@contextmanager
def annotator_session(settings: Settings) -> Iterator[tuple[DoccanoClient, ClassificationProject]]:
    """The scripted annotator logged in to doccano, and the sentiment project it labels (its user and
    membership made first if missing)."""
    admin_password = secrets.load_or_create(settings.secrets_file).doccano_password
    password = annotator_password(admin_password)
    with DoccanoClient(settings.doccano_url, settings.doccano_username, admin_password) as admin:
        admin.login()
        project = ensure_sentiment_project(admin, settings.doccano_project)
        ensure_annotator(admin, project.id, password)
    with DoccanoClient(settings.doccano_url, ANNOTATOR_USERNAME, password) as annotator:
        annotator.login()
        yield annotator, project


def annotate(settings: Settings, limit: int) -> AnnotationReport:
    answers = answer_key(load_articles(), settings.demo_site_url)
    report = AnnotationReport()
    with annotator_session(settings) as (annotator, project):
        # Read the list first: confirming examples while paging through `confirmed=false` would skip some.
        plan = plan_labels(list(annotator.iter_examples(project.id, confirmed=False)), answers)
        report.unmatched = len(plan.unmatched)
        for example_id, sentiment in plan.labels:
            if report.labelled >= limit:
                break
            # In a single-class project a new label replaces everyone's: never overwrite a person's.
            if annotator.categories(project.id, example_id):
                report.already_labelled += 1
                continue
            annotator.add_category(project.id, example_id, project.label_ids[sentiment])
            annotator.confirm_example(project.id, example_id)
            report.labelled += 1
            if report.labelled % 20 == 0:
                log.info("annotator.progress", labelled=report.labelled, limit=limit)
    return report


def main(settings: Settings, args: argparse.Namespace) -> int:
    report = annotate(settings, args.limit)
    print(
        f"scripted annotator labelled {report.labelled} passages in doccano project {settings.doccano_project!r} "
        f"(skipped: {report.unmatched} not from a demo article, {report.already_labelled} already labelled)"
    )
    return 0
