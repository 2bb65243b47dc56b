"""The model version the API serves, behind one reference that a swap replaces atomically.

A request reads `holder.current` once, at its start, and keeps that `ServedModel`
to the end: a swap meanwhile changes what later requests get, never what an
in-flight request uses. The old version is freed when the last request holding
it finishes (plain reference counting; the holder keeps no other copy).

A holder may serve a *fallback*: the version it should serve was refused (its files
fail their checksums, or it does not load), so an older promoted version serves in its
place; `/health` says which and why until a version loads the ordinary way.

A holder may also have an update *pending*: a version announced while the model store was
unavailable, which the model-updates follower keeps trying while the current one serves.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from api.serving.sentiment import SentimentScorer
from ctrlgpt.settings import Settings
from models.manifest import Manifest


@dataclass(frozen=True, eq=False)
class ServedModel:
    version: str
    tokenizer: PreTrainedTokenizerBase
    model: PreTrainedModel
    manifest: Manifest
    path: Path  # the version's directory, whose files reload re-verifies
    loaded_at: datetime
    scorer: SentimentScorer | None = None  # the version's reward model, when it has one (POST /v1/classify)


@dataclass(frozen=True)
class Fallback:
    """Why a holder serves an older version: the version it should serve, refused, and the reason."""

    refused_version: str
    reason: str


@dataclass(frozen=True)
class PendingUpdate:
    """An announced version not loaded yet because the model store is unavailable; retried until it loads."""

    version: str
    reason: str
    since: datetime  # when the store was first found unavailable for this version
    attempts: int
    next_attempt_at: datetime


class ModelHolder:
    """Holds the current `ServedModel`; `swap` replaces it in one step."""

    def __init__(self) -> None:
        self._current: ServedModel | None = None
        self._fallback: Fallback | None = None
        self._pending: PendingUpdate | None = None
        self._swap_lock = threading.Lock()

    @property
    def current(self) -> ServedModel | None:
        return self._current

    @property
    def fallback(self) -> Fallback | None:
        """Set while the current version serves in place of a refused one."""
        return self._fallback

    @property
    def pending(self) -> PendingUpdate | None:
        """Set while an announced version waits for the model store to come back."""
        return self._pending

    def set_pending(self, pending: PendingUpdate | None) -> None:
        self._pending = pending  # one reference, replaced whole: readers see the old or the new

    def swap(self, new: ServedModel, *, fallback: Fallback | None = None) -> str | None:
        """Serve `new` from now on (as a fallback for a refused version, if given); returns the version it
        replaced (not the object, so it can be freed)."""
        with self._swap_lock:
            previous, self._current, self._fallback = self._current, new, fallback
        return previous.version if previous is not None else None


class ModelHolders:
    """One holder per target: the target's policy, announced under its own model name.

    A request's target picks the holder; the model-updates follower finds it by model name.
    """

    def __init__(self, model_names: Mapping[str, str], holders: Mapping[str, ModelHolder] | None = None) -> None:
        given = dict(holders or {})
        unknown = sorted(set(given) - set(model_names))
        if unknown:
            raise ValueError(f"holders given for targets {unknown} that have no model name")
        self._model_names = dict(model_names)
        self._holders = {target: given.get(target) or ModelHolder() for target in self._model_names}

    @classmethod
    def for_settings(cls, settings: Settings, holders: Mapping[str, ModelHolder] | None = None) -> ModelHolders:
        """A holder for each of `settings.target_list`, under `settings.policy_for(target)`."""
        targets = settings.target_list
        if settings.target_sentiment not in targets:
            raise ValueError(f"target_sentiment {settings.target_sentiment!r} must be one of targets {targets}")
        return cls({target: settings.policy_for(target) for target in targets}, holders)

    @property
    def targets(self) -> list[str]:
        return list(self._model_names)

    def model_name(self, target: str) -> str:
        return self._model_names[target]

    def holder(self, target: str) -> ModelHolder:
        return self._holders[target]

    def by_model_name(self) -> dict[str, ModelHolder]:
        return {self._model_names[target]: holder for target, holder in self._holders.items()}
