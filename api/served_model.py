"""The model version the API serves, behind one reference that a swap replaces atomically.

A request reads `holder.current` once, at its start, and keeps that `ServedModel`
to the end: a swap meanwhile changes what later requests get, never what an
in-flight request uses. The old version is freed when the last request holding
it finishes (plain reference counting; the holder keeps no other copy).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trainer.manifest import Manifest


@dataclass(frozen=True, eq=False)
class ServedModel:
    version: str
    tokenizer: PreTrainedTokenizerBase
    model: PreTrainedModel
    manifest: Manifest
    loaded_at: datetime


class ModelHolder:
    """Holds the current `ServedModel`; `swap` replaces it in one step."""

    def __init__(self) -> None:
        self._current: ServedModel | None = None
        self._swap_lock = threading.Lock()

    @property
    def current(self) -> ServedModel | None:
        return self._current

    def swap(self, new: ServedModel) -> str | None:
        """Serve `new` from now on; returns the version it replaced (not the object, so it can be freed)."""
        with self._swap_lock:
            previous, self._current = self._current, new
        return previous.version if previous is not None else None
