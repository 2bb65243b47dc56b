"""Raw page -> clean page: main text, title, summary, date, language (pure, no I/O).

trafilatura finds the main text and drops the boilerplate (navigation, footers,
sidebars, cookie banners); this module turns its output into a `PageCleaned`
with stable text (NFC, one space between words, a blank line between paragraphs)
so that the same page always has the same `content_sha256`. Pages whose main
text is too short or only boilerplate (`streams.quality`) are rejected.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import UTC, date, datetime
from urllib.parse import urlsplit

import pycld2
import trafilatura
from lxml.etree import _Element, strip_tags
from trafilatura.xml import xmltotxt

from streams.quality import boilerplate_reason
from streams.records import PageCleaned, PageFetched

__all__ = [
    "MAX_SUMMARY_CHARS",
    "MIN_TEXT_CHARS",
    "UNDETERMINED_LANGUAGE",
    "PageRejected",
    "clean_page",
    "language_of",
    "normalise_text",
    "summarise",
]

MIN_TEXT_CHARS = 200
MAX_SUMMARY_CHARS = 300
MAX_TITLE_CHARS = 200
# CLD2's answer is as good on a page's first 400 characters as on its whole text (docs/ingest.md),
# and its cost grows with the input.
LANGUAGE_SAMPLE_CHARS = 400
# BCP 47's "undetermined": no language CLD2 knows, or no letters at all.
UNDETERMINED_LANGUAGE = "und"
# CLD2 still answers with the ISO 639 codes withdrawn in 1989; everyone else uses the new ones.
_WITHDRAWN_CODES = {"iw": "he", "in": "id", "ji": "yi", "jw": "jv", "un": UNDETERMINED_LANGUAGE}
# CLD2 refuses text with control characters or Unicode noncharacters ("invalid UTF-8"); they
# carry no language anyway.
_UNREADABLE_FOR_CLD2 = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufdd0-\ufdef"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17))
    + "]"
)

NO_MAIN_TEXT = "no main text found in the HTML"
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
# The date the page states (meta tags, structured data, a byline), not one guessed
# from the copyright line or the URL: a wrong date is worse than none.
_DATE_PARAMS = {"extensive_search": False, "original_date": True}


class PageRejected(ValueError):
    """A page with no usable main text: it goes to the dead-letter topic with this reason."""


def clean_page(
    fetched: PageFetched, *, min_chars: int = MIN_TEXT_CHARS, max_summary_chars: int = MAX_SUMMARY_CHARS
) -> PageCleaned:
    """Extract a fetched page's main text and metadata; raise `PageRejected` if there is none worth keeping."""
    if not 200 <= fetched.status < 300:
        raise PageRejected(f"HTTP status {fetched.status}: an error page, not content")
    media_type = fetched.content_type.split(";", 1)[0].strip().lower()
    if media_type not in _HTML_TYPES:
        raise PageRejected(f"content type {fetched.content_type!r} is not HTML")
    if not fetched.html.strip():
        raise PageRejected("empty HTML")

    # Links are kept for the boilerplate rules, then unwrapped to their text.
    document = trafilatura.bare_extraction(
        fetched.html,
        url=fetched.final_url,
        with_metadata=True,
        include_comments=False,
        include_tables=True,
        include_links=True,
        date_extraction_params=_DATE_PARAMS,
    )
    if document is None or document.body is None:
        raise PageRejected(NO_MAIN_TEXT)
    boilerplate = boilerplate_reason(document.body)
    strip_tags(document.body, "ref")

    headings, paragraphs = _paragraphs(document.body)
    title = normalise_text(document.title or "") or (headings[0] if headings else "")
    # The page's own heading often opens the main text; keeping it there would make
    # it the first sentence of every generated summary.
    if paragraphs and title and paragraphs[0].casefold() == title.casefold():
        paragraphs = paragraphs[1:]
    text = "\n\n".join(paragraphs)
    if not text:
        raise PageRejected(NO_MAIN_TEXT)
    if len(text) < min_chars:
        raise PageRejected(f"main text has {len(text)} characters, fewer than the minimum {min_chars}")
    if boilerplate:
        raise PageRejected(boilerplate)

    summary = summarise(normalise_text(document.description or "") or text, max_summary_chars)
    return PageCleaned(
        url=fetched.final_url,
        domain=(urlsplit(fetched.final_url).hostname or "").lower(),
        title=_truncate(title or _first_sentence(text), MAX_TITLE_CHARS),
        summary=summary,
        text=text,
        language=language_of(text),
        content_sha256=hashlib.sha256(text.encode()).hexdigest(),
        fetched_at=fetched.fetched_at,
        crawl_id=fetched.crawl_id,
        published=_published(document.date),
    )


def language_of(text: str) -> str:
    """The main language of `text` by CLD2, as an ISO 639-1 code (or BCP 47 with a script: zh-Hant); "und" if none."""
    sample = _UNREADABLE_FOR_CLD2.sub(" ", text[:LANGUAGE_SAMPLE_CHARS]).encode("utf-8", "replace")
    code = pycld2.detect(sample)[2][0][1]
    return _WITHDRAWN_CODES.get(code, code)


def normalise_text(raw: str) -> str:
    """NFC, one space between words, no blank or padded lines; line breaks inside a block are kept."""
    lines = (" ".join(line.split()) for line in unicodedata.normalize("NFC", raw).splitlines())
    return "\n".join(line for line in lines if line)


def summarise(text: str, max_chars: int) -> str:
    """The leading whole sentences of `text` that fit in `max_chars` (at least one, cut at a word if too long)."""
    flat = _flatten(text)
    summary = ""
    for sentence in _SENTENCE_END.split(flat):
        candidate = f"{summary} {sentence}".strip()
        if len(candidate) > max_chars:
            break
        summary = candidate
    return summary or _truncate(flat, max_chars)


def _published(stated: str | None) -> datetime | None:
    """trafilatura's date (ISO `YYYY-MM-DD`) as midnight UTC; None when the page states none."""
    if not stated:
        return None
    try:
        day = date.fromisoformat(stated[:10])
    except ValueError:
        return None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _first_sentence(text: str) -> str:
    return _SENTENCE_END.split(_flatten(text), 1)[0]


def _flatten(text: str) -> str:
    return " ".join(text.split())


def _truncate(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "…"


def _paragraphs(body: _Element) -> tuple[list[str], list[str]]:
    """trafilatura's block elements (paragraph, heading, list, table, quote) as normalised paragraphs."""
    headings, paragraphs = [], []
    for block in body:
        paragraph = normalise_text(xmltotxt(block, include_formatting=False))
        if not paragraph:
            continue
        if block.tag == "head":
            headings.append(paragraph)
        paragraphs.append(paragraph)
    return headings, paragraphs
