"""Splitting a clean page's text into passages small enough to label one at a time.

Passages follow paragraph boundaries: paragraphs are joined while the passage stays
within `max_chars`; a paragraph longer than that is cut at sentence ends (at spaces
for a sentence longer still). A short last passage joins the one before when it fits.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Passage", "passage_key", "split_passages"]

MIN_CHARS = 200
MAX_CHARS = 800

_PARAGRAPH_BREAK = re.compile(r"\n\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Passage:
    index: int
    text: str
    key: str


def passage_key(url: str, index: int, text: str) -> str:
    """Stable id of a passage: the same page text always yields the same keys."""
    return hashlib.sha256(f"{url}\n{index}\n{text}".encode()).hexdigest()


def split_passages(url: str, text: str, *, min_chars: int = MIN_CHARS, max_chars: int = MAX_CHARS) -> list[Passage]:
    if not 0 < min_chars <= max_chars:
        raise ValueError(f"need 0 < min_chars <= max_chars, got {min_chars}, {max_chars}")
    pieces = [piece for paragraph in _paragraphs(text) for piece in _fit(paragraph, max_chars)]
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 2 + len(piece) > max_chars:
            chunks.append(current)
            current = piece
        else:
            current = f"{current}\n\n{piece}" if current else piece
    if current:
        if chunks and len(current) < min_chars and len(chunks[-1]) + 2 + len(current) <= max_chars:
            chunks[-1] = f"{chunks[-1]}\n\n{current}"
        else:
            chunks.append(current)
    return [Passage(index=i, text=chunk, key=passage_key(url, i, chunk)) for i, chunk in enumerate(chunks)]


def _paragraphs(text: str) -> list[str]:
    paragraphs = (_SPACES.sub(" ", block).strip() for block in _PARAGRAPH_BREAK.split(text))
    return [p for p in paragraphs if p]


def _fit(paragraph: str, max_chars: int) -> list[str]:
    """Cut one paragraph into pieces of at most `max_chars`: at sentence ends, else at spaces."""
    if len(paragraph) <= max_chars:
        return [paragraph]
    return _pack(
        (part for sentence in _SENTENCE_END.split(paragraph) for part in _cut_words(sentence, max_chars)), max_chars
    )


def _cut_words(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    # A single "word" longer than a passage (a URL, a data blob) is cut where it must be.
    chunks = (word[i : i + max_chars] for word in sentence.split(" ") for i in range(0, len(word), max_chars))
    return _pack(chunks, max_chars)


def _pack(parts: Iterable[str], max_chars: int) -> list[str]:
    """Join parts with spaces, greedily, into pieces of at most `max_chars` (each part fits alone)."""
    pieces: list[str] = []
    current = ""
    for part in parts:
        if current and len(current) + 1 + len(part) > max_chars:
            pieces.append(current)
            current = part
        else:
            current = f"{current} {part}" if current else part
    if current:
        pieces.append(current)
    return pieces
