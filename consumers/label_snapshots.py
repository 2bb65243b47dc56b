"""What doccano's annotations say, as label events (pure: no I/O).

A snapshot maps each annotation's `label_id` to the label it stands for; the label
bridge compares an example's snapshot with the one it published last (`label_events`).
An annotation that cannot become a label (a comparison example without its
completions, an empty text) is a `Rejection`: dead-lettered once, not published.
How each project's annotations read is documented in docs/labels.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from consumers.doccano_client import ComparisonPair, comparison_from_meta
from streams.records import ExpansionLabel, LabelRecorded, PreferenceLabel, SentimentLabel

__all__ = [
    "AnnotationSnapshot",
    "ProjectSnapshot",
    "Rejection",
    "annotation_label_id",
    "comparison_snapshot",
    "expansion_snapshot",
    "label_events",
    "new_rejections",
    "sentiment_snapshot",
]

log = structlog.get_logger()

A_BETTER, B_BETTER, TIE = "A better", "B better", "tie"


class AnnotationSnapshot(BaseModel):
    """What a published annotation said: enough to publish its deletion later, even of a deleted example."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    example_id: int
    annotator: str
    label: SentimentLabel | ExpansionLabel | PreferenceLabel = Field(discriminator="kind")
    page_url: str | None = None
    model_version: str | None = None


@dataclass(frozen=True)
class Rejection:
    """An annotation that cannot become a label, with why and what doccano said (example and annotation)."""

    reason: str
    original: Mapping[str, Any]

    @property
    def fingerprint(self) -> str:
        """Changes when the annotation or its example does: a changed bad annotation is dead-lettered again."""
        return hashlib.sha256(self.original_json().encode()).hexdigest()

    def original_json(self) -> str:
        return json.dumps(self.original, sort_keys=True, default=str)


@dataclass
class ProjectSnapshot:
    labels: dict[str, AnnotationSnapshot] = field(default_factory=dict)
    rejected: dict[str, Rejection] = field(default_factory=dict)

    def update(self, other: ProjectSnapshot) -> None:
        self.labels.update(other.labels)
        self.rejected.update(other.rejected)


def annotation_label_id(project_id: int, example_id: int, annotation_id: int) -> str:
    return f"doccano:{project_id}:{example_id}:{annotation_id}"


def _username(usernames: Mapping[int, str], user_id: int) -> str:
    return usernames.get(user_id, f"user-{user_id}")


def _page_url(example: Mapping[str, Any]) -> str | None:
    return (example.get("meta") or {}).get("url")


def sentiment_snapshot(
    project_id: int,
    example: Mapping[str, Any],
    categories: Iterable[Mapping[str, Any]],
    label_texts: Mapping[int, str],
    usernames: Mapping[int, str],
) -> ProjectSnapshot:
    """One example of the sentiment project: each category annotation is a `SentimentLabel`."""
    snapshot = ProjectSnapshot()
    for category in categories:
        label_id = annotation_label_id(project_id, example["id"], category["id"])
        try:
            label = SentimentLabel(text=example["text"], sentiment=label_texts[category["label"]])
        except (KeyError, ValidationError) as exc:
            snapshot.rejected[label_id] = _rejection(f"not a sentiment label: {exc!r}", example, category)
            continue
        snapshot.labels[label_id] = AnnotationSnapshot(
            example_id=example["id"],
            annotator=_username(usernames, category["user"]),
            label=label,
            page_url=_page_url(example),
        )
    return snapshot


def expansion_snapshot(
    project_id: int,
    example: Mapping[str, Any],
    texts: Iterable[Mapping[str, Any]],
    *,
    proposer: str,
    confirmed_by: str | None,
    usernames: Mapping[int, str],
) -> ProjectSnapshot:
    """One example of the expansion project: its text annotations that people stand behind.

    The doccano sink proposes the page's body as a text annotation by `proposer`.
    A text written by anyone else is that person's expansion (a correction, or
    the body typed again: an approval) and replaces the proposal. Texts by
    `proposer` count once someone checked the example (`confirmed_by`, who is then
    their annotator) and nobody else wrote one.
    """
    texts = list(texts)
    people = [(t, name) for t in texts if (name := _username(usernames, t["user"])) != proposer]
    if people:
        counted = people
    elif confirmed_by is not None:
        counted = [(t, confirmed_by) for t in texts]
    else:
        counted = []
    snapshot = ProjectSnapshot()
    for text, annotator in counted:
        label_id = annotation_label_id(project_id, example["id"], text["id"])
        try:
            label = ExpansionLabel(prompt=example["text"], completion=text["text"])
        except ValidationError as exc:
            snapshot.rejected[label_id] = _rejection(f"not an expansion: {exc!r}", example, text)
            continue
        snapshot.labels[label_id] = AnnotationSnapshot(
            example_id=example["id"], annotator=annotator, label=label, page_url=_page_url(example)
        )
    return snapshot


def comparison_snapshot(
    project_id: int,
    example: Mapping[str, Any],
    categories: Iterable[Mapping[str, Any]],
    label_texts: Mapping[int, str],
    usernames: Mapping[int, str],
) -> ProjectSnapshot:
    """One example of the comparison project: "A better" / "B better" is a `PreferenceLabel`; a tie is none."""
    snapshot = ProjectSnapshot()
    try:
        pair: ComparisonPair | None = comparison_from_meta(example.get("meta") or {})
        bad_meta = ""
    except ValidationError as exc:
        pair, bad_meta = None, f"the example's meta is not a comparison (prompt, a, b): {exc!r}"
    for category in categories:
        label_id = annotation_label_id(project_id, example["id"], category["id"])
        verdict = label_texts.get(category["label"])
        if verdict == TIE:
            # Neither completion is preferred: nothing to learn. A tie replacing a choice withdraws it.
            log.debug("label_bridge.tie_not_a_preference", label_id=label_id)
            continue
        if pair is None or verdict not in (A_BETTER, B_BETTER):
            reason = bad_meta or f"unknown verdict {verdict!r} (known: {A_BETTER}, {B_BETTER}, {TIE})"
            snapshot.rejected[label_id] = _rejection(reason, example, category)
            continue
        chosen, rejected = (pair.a, pair.b) if verdict == A_BETTER else (pair.b, pair.a)
        snapshot.labels[label_id] = AnnotationSnapshot(
            example_id=example["id"],
            annotator=_username(usernames, category["user"]),
            label=PreferenceLabel(prompt=pair.prompt, chosen=chosen, rejected=rejected, target=pair.target),
            page_url=pair.page_url,
            model_version=pair.model_version,
        )
    return snapshot


def _rejection(reason: str, example: Mapping[str, Any], annotation: Mapping[str, Any]) -> Rejection:
    return Rejection(reason=reason, original={"example": dict(example), "annotation": dict(annotation)})


def label_events(
    previous: Mapping[str, AnnotationSnapshot], current: Mapping[str, AnnotationSnapshot]
) -> list[LabelRecorded]:
    """The events that turn `previous` into `current`, in label_id order."""
    events = []
    for label_id in sorted(previous.keys() | current.keys()):
        before, now = previous.get(label_id), current.get(label_id)
        if before is None:
            events.append(_event(label_id, now, "created"))
        elif now is None:
            events.append(_event(label_id, before, "deleted"))
        elif now != before:
            events.append(_event(label_id, now, "updated"))
    return events


def new_rejections(previous: Mapping[str, str], current: Mapping[str, Rejection]) -> dict[str, Rejection]:
    """The rejections not dead-lettered yet: `previous` maps label_id -> fingerprint of what was."""
    return {
        label_id: rejection
        for label_id, rejection in sorted(current.items())
        if previous.get(label_id) != rejection.fingerprint
    }


def _event(label_id: str, snapshot: AnnotationSnapshot, action: str) -> LabelRecorded:
    return LabelRecorded(
        label_id=label_id,
        source="doccano",
        annotator=snapshot.annotator,
        action=action,
        label=snapshot.label,
        page_url=snapshot.page_url,
        model_version=snapshot.model_version,
    )
