"""A small client for the REST API of doccano 1.8.4, the labeling tool people use.

Endpoints are those of doccano's Django apps (`auth`, `projects`, `examples`,
`labels`, `label_types`, `users`, `roles`); most have no trailing slash. We
authenticate with a DRF token only: the login also opens a Django session, whose
cookie would make every later write fail doccano's CSRF check, so it is dropped.
A transport error, 429 or 5xx is `ServiceUnavailable` (retry later); any other
refusal is `DoccanoError`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, model_validator

from streams.bus import ServiceUnavailable

__all__ = [
    "SENTIMENTS",
    "VERDICTS",
    "ClassificationProject",
    "ComparisonPair",
    "DoccanoClient",
    "DoccanoError",
    "comparison_example",
    "comparison_from_meta",
    "comparison_key",
    "comparison_text",
    "ensure_comparison_project",
    "ensure_expansion_project",
    "ensure_sentiment_project",
    "import_comparisons",
]

log = structlog.get_logger()

# The category types of the sentiment project, in the order the UI shows them.
SENTIMENTS = ("positive", "negative")
# The verdicts of the comparison project: doccano has no ranking type, so a pair is classified.
VERDICTS = ("A better", "B better", "tie")
PAGE_SIZE = 100


@dataclass(frozen=True)
class ProjectKind:
    """doccano's names for a type of project: `project_type` and the serializer's `resourcetype`."""

    project_type: str
    resourcetype: str


TEXT_CLASSIFICATION = ProjectKind("DocumentClassification", "TextClassificationProject")
SEQ2SEQ = ProjectKind("Seq2seq", "Seq2seqProject")


class DoccanoError(RuntimeError):
    """doccano refused a request (4xx other than 429): retrying the same request will not help."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"doccano {method} {path} -> {status}: {body[:500]}")
        self.status = status


class DoccanoClient:
    def __init__(self, base_url: str, username: str, password: str, *, timeout: float = 30.0) -> None:
        self._username = username
        self._password = password
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout, headers={"Accept": "application/json"}
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DoccanoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- auth and users

    def login(self) -> None:
        self._http.headers.pop("Authorization", None)
        token = self._request("POST", "/v1/auth/login/", json={"username": self._username, "password": self._password})[
            "key"
        ]
        self._http.cookies.clear()
        self._http.headers["Authorization"] = f"Token {token}"

    def usernames(self) -> dict[int, str]:
        """Every user's id -> name (annotations name their user by id only)."""
        return {user["id"]: user["username"] for user in self._request("GET", "/v1/users")}

    def create_user(self, username: str, password: str) -> dict[str, Any]:
        """Needs a superuser's token."""
        return self._request(
            "POST", "/v1/users/create", json={"username": username, "password1": password, "password2": password}
        )

    # -- projects

    def find_project(self, name: str) -> dict[str, Any] | None:
        """The project of that exact name; if a race made two, the oldest (lowest id) is the one."""
        # `q` searches names and descriptions by substring; the exact name decides.
        same_name = [p for p in self._paginate("/v1/projects", {"q": name}) if p["name"] == name]
        return min(same_name, key=lambda p: p["id"], default=None)

    def get_or_create_text_classification_project(self, name: str, *, description: str) -> dict[str, Any]:
        """Single-class, collaborative (every annotator sees and we read everyone's labels), fixed order."""
        return self.get_or_create_project(
            name,
            description=description,
            kind=TEXT_CLASSIFICATION,
            wanted={"single_class_classification": True, "collaborative_annotation": True, "random_order": False},
        )

    def get_or_create_seq2seq_project(self, name: str, *, description: str) -> dict[str, Any]:
        """Collaborative, so that reviewers see (and correct) the text proposed by the admin user."""
        return self.get_or_create_project(
            name,
            description=description,
            kind=SEQ2SEQ,
            wanted={"collaborative_annotation": True, "random_order": False},
        )

    def get_or_create_project(
        self, name: str, *, description: str, kind: ProjectKind, wanted: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The project of that name, created (or its `wanted` settings fixed) when needed."""
        project = self.find_project(name)
        if project is None:
            created = self._request(
                "POST",
                "/v1/projects",
                json={
                    "name": name,
                    "description": description,
                    "guideline": description,
                    "project_type": kind.project_type,
                    "resourcetype": kind.resourcetype,
                    **wanted,
                },
            )
            # Services starting together may each create it: all of them keep the oldest.
            project = self.find_project(name)
            if project["id"] != created["id"]:
                self.delete_project(created["id"])
                log.info("doccano.project_duplicate_removed", name=name, kept=project["id"], removed=created["id"])
            else:
                log.info("doccano.project_created", name=name, id=created["id"], type=kind.project_type)
                return created
        if project["project_type"] != kind.project_type:
            raise DoccanoError(
                "GET", "/v1/projects", 409, f"project {name!r} exists but is a {project['project_type']} project"
            )
        if any(project.get(field) != value for field, value in wanted.items()):
            log.warning("doccano.project_settings_fixed", name=name, wanted=dict(wanted))
            project = self._request("PATCH", f"/v1/projects/{project['id']}", json=dict(wanted))
        return project

    def delete_project(self, project_id: int) -> None:
        self._request("DELETE", "/v1/projects", json={"ids": [project_id]})

    def members(self, project_id: int) -> list[dict[str, Any]]:
        return self._request("GET", f"/v1/projects/{project_id}/members")

    def add_member(self, project_id: int, user_id: int, role_name: str) -> dict[str, Any]:
        roles = {role["name"]: role["id"] for role in self._request("GET", "/v1/roles")}
        return self._request(
            "POST", f"/v1/projects/{project_id}/members", json={"user": user_id, "role": roles[role_name]}
        )

    # -- label types

    def category_types(self, project_id: int) -> dict[str, int]:
        """Label text -> category type id."""
        return {t["text"]: t["id"] for t in self._request("GET", f"/v1/projects/{project_id}/category-types")}

    def get_or_create_category_types(self, project_id: int, names: tuple[str, ...]) -> dict[str, int]:
        existing = self.category_types(project_id)
        for name in names:
            if name not in existing:
                created = self._request("POST", f"/v1/projects/{project_id}/category-types", json={"text": name})
                existing[name] = created["id"]
        return existing

    # -- examples

    def create_example(self, project_id: int, text: str, meta: Mapping[str, Any]) -> dict[str, Any]:
        return self._request("POST", f"/v1/projects/{project_id}/examples", json={"text": text, "meta": dict(meta)})

    def iter_examples(
        self, project_id: int, *, confirmed: bool | None = None, label: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Examples in creation order; `label` keeps those someone labelled with that category."""
        params: dict[str, Any] = {}
        if confirmed is not None:
            params["confirmed"] = "true" if confirmed else "false"
        if label is not None:
            params["label"] = label
        return self._paginate(f"/v1/projects/{project_id}/examples", params)

    def get_example(self, project_id: int, example_id: int) -> dict[str, Any] | None:
        try:
            return self._request("GET", f"/v1/projects/{project_id}/examples/{example_id}")
        except DoccanoError as exc:
            if exc.status == 404:
                return None
            raise

    def delete_examples(self, project_id: int, example_ids: list[int]) -> None:
        """Delete these examples and their annotations (doccano deletes them all when the list is empty: refused)."""
        if not example_ids:
            raise ValueError("no example ids: doccano would delete every example of the project")
        self._request("DELETE", f"/v1/projects/{project_id}/examples", json={"ids": example_ids})

    def confirm_example(self, project_id: int, example_id: int) -> None:
        """Mark an example confirmed, as the UI's check button does.

        doccano's POST toggles: it removes the state when one exists. So we post only
        when nobody has confirmed it yet (in a collaborative project, anyone's counts).
        """
        if not self.example_states(project_id, example_id):
            self._request("POST", f"/v1/projects/{project_id}/examples/{example_id}/states", json={})

    def example_states(self, project_id: int, example_id: int) -> list[dict[str, Any]]:
        """Who checked the example (id, confirmed_by: user id, confirmed_at); everyone's, if collaborative."""
        return list(self._paginate(f"/v1/projects/{project_id}/examples/{example_id}/states", {}))

    # -- category annotations

    def categories(self, project_id: int, example_id: int) -> list[dict[str, Any]]:
        """An example's category annotations: id, user (id), label (type id), created_at, updated_at."""
        return self._request("GET", f"/v1/projects/{project_id}/examples/{example_id}/categories")

    def add_category(self, project_id: int, example_id: int, label_id: int) -> dict[str, Any]:
        """In a single-class project this replaces the example's category annotations (everyone's, if collaborative)."""
        return self._request(
            "POST",
            f"/v1/projects/{project_id}/examples/{example_id}/categories",
            json={"example": example_id, "label": label_id},
        )

    def delete_category(self, project_id: int, example_id: int, annotation_id: int) -> None:
        self._request("DELETE", f"/v1/projects/{project_id}/examples/{example_id}/categories/{annotation_id}")

    # -- text annotations (seq2seq)

    def text_labels(self, project_id: int, example_id: int) -> list[dict[str, Any]]:
        """An example's text annotations: id, user (id), text, created_at, updated_at."""
        return self._request("GET", f"/v1/projects/{project_id}/examples/{example_id}/texts")

    def add_text_label(self, project_id: int, example_id: int, text: str) -> dict[str, Any]:
        """A text annotation by the logged-in user (in a seq2seq project: a proposed output)."""
        return self._request(
            "POST", f"/v1/projects/{project_id}/examples/{example_id}/texts", json={"example": example_id, "text": text}
        )

    def update_text_label(self, project_id: int, example_id: int, annotation_id: int, text: str) -> dict[str, Any]:
        """Change a text annotation's text in place, as the UI does when one edits it (its author stays)."""
        return self._request(
            "PATCH", f"/v1/projects/{project_id}/examples/{example_id}/texts/{annotation_id}", json={"text": text}
        )

    def delete_text_label(self, project_id: int, example_id: int, annotation_id: int) -> None:
        self._request("DELETE", f"/v1/projects/{project_id}/examples/{example_id}/texts/{annotation_id}")

    # -- transport

    def _paginate(self, path: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            page = self._request("GET", path, params={**params, "limit": PAGE_SIZE, "offset": offset})
            yield from page["results"]
            offset += len(page["results"])
            if not page["next"] or not page["results"]:
                return

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"doccano at {self._http.base_url} unreachable: {exc!r}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise ServiceUnavailable(f"doccano {method} {path} -> {response.status_code}")
        if response.status_code >= 400:
            raise DoccanoError(method, path, response.status_code, response.text)
        if not response.content:
            return None
        # An unknown path is answered 200 with the web app's index.html, not 404.
        if not response.headers.get("content-type", "").startswith("application/json"):
            raise DoccanoError(method, path, response.status_code, f"not a JSON answer: {response.text[:200]}")
        return response.json()


@dataclass(frozen=True)
class ClassificationProject:
    """A classification project's id and its category types (text -> id)."""

    id: int
    label_ids: dict[str, int]


def _ensure_classification_project(
    client: DoccanoClient, name: str, description: str, labels: tuple[str, ...]
) -> ClassificationProject:
    project = client.get_or_create_text_classification_project(name, description=description)
    return ClassificationProject(project["id"], client.get_or_create_category_types(project["id"], labels))


def ensure_sentiment_project(client: DoccanoClient, name: str) -> ClassificationProject:
    description = "Is this passage positive or negative? One label per passage; check it when done."
    return _ensure_classification_project(client, name, description, SENTIMENTS)


def ensure_expansion_project(client: DoccanoClient, name: str) -> int:
    """The seq2seq project of page expansions (title and summary -> body); its id."""
    project = client.get_or_create_seq2seq_project(
        name,
        description=(
            "Each example is a page's title and summary; the proposed text is the page's body. "
            "Correct the text into a good expansion of the short text, then check the example."
        ),
    )
    return project["id"]


def ensure_comparison_project(client: DoccanoClient, name: str) -> ClassificationProject:
    description = "Two generations for the same prompt: is A better, B better, or are they a tie? One label each."
    return _ensure_classification_project(client, name, description, VERDICTS)


def comparison_text(prompt: str, first: str, second: str) -> str:
    """How a pair of generations reads as one example of the comparison project."""
    return f"{prompt}\n\nA: {first}\n\nB: {second}"


class ComparisonPair(BaseModel):
    """Two completions of one prompt, for people to rank (an example of the comparison project)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    prompt: str
    a: str = Field(min_length=1)
    b: str = Field(min_length=1)
    target: str | None = Field(None, description="The sentiment both completions were asked for, when known.")
    model_version: str | None = Field(None, description="The model version that wrote them, when one did.")
    page_url: str | None = Field(None, description="The page the prompt came from, when it did.")

    @model_validator(mode="after")
    def _two_different_completions(self) -> ComparisonPair:
        if self.a == self.b:
            raise ValueError("A and B are the same text: there is nothing to rank")
        return self


def comparison_key(pair: ComparisonPair) -> str:
    """One example per prompt, target and unordered pair of completions: B-then-A is the same comparison."""
    identity = ["comparison", pair.prompt, pair.target, sorted((pair.a, pair.b))]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()


def comparison_example(pair: ComparisonPair) -> tuple[str, dict[str, Any]]:
    """The example's text (prompt, A, B, as people read it) and its meta (the exact texts, read back by the bridge)."""
    meta = {
        "prompt": pair.prompt,
        "a": pair.a,
        "b": pair.b,
        "target": pair.target,
        "model_version": pair.model_version,
        "url": pair.page_url,
        "comparison_key": comparison_key(pair),
    }
    return comparison_text(pair.prompt, pair.a, pair.b), meta


def comparison_from_meta(meta: Mapping[str, Any]) -> ComparisonPair:
    """The pair an example of the comparison project holds; a `ValidationError` when its meta is not one."""
    fields = {name: value for name, value in meta.items() if name not in ("url", "comparison_key")}
    return ComparisonPair.model_validate({**fields, "page_url": meta.get("url")})


def import_comparisons(client: DoccanoClient, project_id: int, pairs: Iterable[ComparisonPair]) -> int:
    """Create an example for each pair the project does not hold yet (by `comparison_key`); returns how many.

    Keys are read from the project first, so importing the same pairs again, or a
    pair in the other order, creates nothing. Two importers running at once may
    both create one: run one importer at a time.
    """
    known = {
        key for example in client.iter_examples(project_id) if (key := (example["meta"] or {}).get("comparison_key"))
    }
    created = 0
    for pair in pairs:
        text, meta = comparison_example(pair)
        if meta["comparison_key"] in known:
            continue
        client.create_example(project_id, text, meta)
        known.add(meta["comparison_key"])
        created += 1
    log.info("doccano.comparisons_imported", project_id=project_id, created=created, known=len(known))
    return created
