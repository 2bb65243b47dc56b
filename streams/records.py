"""Typed, versioned records: the payload of every topic ctrlgpt's services exchange.

Every record carries `schema_version`. Records outlive builds (labels are kept forever), so a
reader upgrades an older version step by step through its class's `UPGRADES` (n -> n+1, on
the record's JSON) and refuses only what it cannot read: a newer version, or an older one no
upgrade leads from (the record goes to the dead-letter topic) rather than guessing. Each
record's JSON schema is kept per version in tests/streams/record_schema_snapshots/: an incompatible
change without a new version and an upgrade fails the tests. A record is JSON on the wire,
encoded and decoded only through `streams.topics`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "CrawlRequested",
    "DeadLetter",
    "ExpansionLabel",
    "LabelRecorded",
    "ModelLoadFailed",
    "ModelPromoted",
    "PageCleaned",
    "PageFetched",
    "PreferenceLabel",
    "RatingLabel",
    "Record",
    "RunStage",
    "SentimentLabel",
    "Stage",
    "TrainingRequested",
    "TrainingRunProgressed",
]


# The stages that consume a topic: each has its dead-letter topic (streams.topics.dead_letter_topic),
# names its dead letters and its log lines with it.
Stage = Literal["crawl", "clean", "index", "doccano", "labels", "train", "api"]
# The stages of a training run, as `TrainingRunProgressed` announces them.
RunStage = Literal[
    "queued", "data", "tokenizer", "sft", "reward", "ppo", "gate", "register", "done", "failed", "cancelled"
]


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


class Record(BaseModel):
    """Base of every topic's record: strict, immutable, versioned."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    SCHEMA_VERSION: ClassVar[int] = 1
    # version n -> a function from a record's JSON object in version n to the same record in n + 1
    UPGRADES: ClassVar[dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {}

    schema_version: int = 1
    event_id: str = Field(default_factory=_new_id)
    created_at: datetime = Field(default_factory=_now)

    @model_validator(mode="before")
    @classmethod
    def _upgraded(cls, data: Any) -> Any:
        """An older version's JSON, upgraded one version at a time to this build's."""
        if not isinstance(data, dict):
            return data
        version = data.get("schema_version", cls.SCHEMA_VERSION)
        if not isinstance(version, int) or version >= cls.SCHEMA_VERSION:
            return data  # this build's, or newer (refused below)
        while version < cls.SCHEMA_VERSION:
            upgrade = cls.UPGRADES.get(version)
            if upgrade is None:
                raise ValueError(
                    f"{cls.__name__} schema_version {version} cannot be upgraded to {cls.SCHEMA_VERSION} "
                    f"(this build upgrades from versions {sorted(cls.UPGRADES) or 'none'})"
                )
            data = {**upgrade(dict(data)), "schema_version": version + 1}
            version += 1
        return data

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != cls.SCHEMA_VERSION:
            raise ValueError(
                f"{cls.__name__} schema_version {value} is not supported (this build reads {cls.SCHEMA_VERSION})"
            )
        return value


def _require_http(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    return url


HttpUrl = Annotated[str, Field(min_length=8, max_length=4096), AfterValidator(_require_http)]


class CrawlRequested(Record):
    """A URL the crawler should fetch: a seed, or a link found on a fetched page."""

    url: HttpUrl
    crawl_id: str
    depth: int = Field(0, ge=0)
    max_depth: int = Field(2, ge=0)
    allowed_domains: list[str] = Field(default_factory=list, description="Empty: the seed's own host only.")
    source: Literal["seed", "link", "sitemap", "api", "recrawl"] = "seed"
    fetch_mode: Literal["browser", "http"] = Field(
        "browser", description="browser: rendered by Chromium; http: a plain GET, cheaper for pages without JavaScript."
    )
    max_pages: int | None = Field(None, ge=1, description="Pages per site for this crawl; None: the crawler's setting.")


class PageFetched(Record):
    """A page as the browser rendered it."""

    url: HttpUrl
    final_url: HttpUrl
    crawl_id: str
    depth: int = Field(0, ge=0)
    status: int
    content_type: str = "text/html"
    html: str
    fetched_at: datetime = Field(default_factory=_now)


class PageCleaned(Record):
    """A page's main text and metadata, ready to index, label and train on."""

    url: HttpUrl
    domain: str
    title: str
    summary: str
    text: str = Field(min_length=1)
    language: str
    content_sha256: str
    fetched_at: datetime
    crawl_id: str
    published: datetime | None = Field(None, description="The page's own publication date, when it states one.")
    near_duplicate_of: str | None = Field(
        None,
        description="URL of an earlier page with nearly the same text; sinks index it but do not send it to labeling.",
    )


class SentimentLabel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["sentiment"] = "sentiment"
    text: str = Field(min_length=1)
    sentiment: str = Field(min_length=1, description="A label of the sentiment project, e.g. positive or negative.")


class PreferenceLabel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["preference"] = "preference"
    prompt: str
    chosen: str = Field(min_length=1)
    rejected: str = Field(min_length=1)
    target: str | None = Field(None, description="The sentiment both completions were asked for, when known.")


class ExpansionLabel(BaseModel):
    """An approved or corrected expansion: an SFT pair."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["expansion"] = "expansion"
    prompt: str = Field(min_length=1)
    completion: str = Field(min_length=1)


class RatingLabel(BaseModel):
    """A thumbs up or down on one generation, from the API's feedback."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["rating"] = "rating"
    prompt: str = Field(min_length=1)
    completion: str = Field(min_length=1)
    rating: Literal["up", "down"]
    target: str | None = Field(None, description="The sentiment the generation was asked for, when known.")


class LabelRecorded(Record):
    """A person's judgement, from doccano or from the API's feedback endpoint."""

    label_id: str = Field(description="Stable id of the judgement, e.g. doccano:<project>:<example>:<annotation>.")
    source: Literal["doccano", "api"]
    annotator: str
    action: Literal["created", "updated", "deleted"] = "created"
    label: SentimentLabel | PreferenceLabel | ExpansionLabel | RatingLabel = Field(discriminator="kind")
    page_url: str | None = None
    model_version: str | None = Field(None, description="The served version that wrote the judged text, when it did.")


class TrainingRequested(Record):
    """An operator's command to the trainer: start a run now, or cancel the running one."""

    command: Literal["train", "cancel"]
    requested_by: str = Field("operator", min_length=1)
    reason: str = ""
    run_id: str | None = Field(None, description="cancel: the run to stop; None: whichever is running.")


class TrainingRunProgressed(Record):
    """Progress of a training run: one per stage change and every few steps."""

    run_id: str
    stage: RunStage
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    reward: float | None = None
    kl: float | None = None
    message: str = ""


class ModelPromoted(Record):
    """A model version became current. The topic is compacted: its last record per key is the truth.

    Schema 2: the version is named by its place in the model store (`uri`), never by a host path,
    carries its manifest's checksums, and is signed (`models.announcements`): a replica loads only
    what its own store holds at that place and its key authenticates. Schema 1 (a host path) has
    no upgrade: no reader can sign it; the trainer announces the current versions again instead
    (`models.operations.reannounce_current`).
    """

    SCHEMA_VERSION: ClassVar[int] = 2

    schema_version: int = 2
    model_name: str = Field("expansion-policy", description="Compaction key: one current version per model name.")
    version: str
    uri: str = Field(
        description="The version in the model store: file:///<registry>/<model name>/<version> (local directory) "
        "or s3://<bucket>/<prefix><model name>/<version> (object store)."
    )
    manifest_sha256: str
    files: dict[str, str] = Field(
        default_factory=dict, description="The manifest's checksums: relative path -> sha256 of every file."
    )
    parent_version: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    action: Literal["promoted", "rolled_back", "pinned"] = Field(
        "promoted", description="promoted: passed the gate; rolled_back / pinned: an operator chose this version."
    )
    reason: str = ""
    signature: str = Field(
        "",
        description="HMAC-SHA256 (hex) of every other field as canonical JSON, keyed with the key the trainer and "
        "the API replicas share (model_signing_key).",
    )


class ModelLoadFailed(Record):
    """An API replica could not serve a version it was told about and kept serving the one it had."""

    model_name: str
    version: str
    replica: str
    reason: str
    error_type: str
    serving_version: str | None = None


class DeadLetter(Record):
    """A record a stage could not parse or process, with why and where it came from."""

    stage: Stage
    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    reason: str
    error_type: str
    original_base64: str = Field(
        description="The original bytes, base64; only their first bytes when `truncated` (the whole letter would "
        "exceed the producer's message.max.bytes): the original stays at source_topic/partition/offset until retention."
    )
    attempts: int = 1
    truncated: bool = False
    original_size: int | None = Field(None, description="Bytes of the original message, when `truncated`.")
