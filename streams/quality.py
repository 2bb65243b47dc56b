"""Is an extracted main text an article, or only boilerplate? (pure, no I/O)

trafilatura keeps what looks like the page's main block; on an index or section
page that block is a list of linked headlines with teasers, which reads like
text but is navigation. Two rules catch it, both measured on trafilatura's
extracted body with its links (`ref` elements) kept:

- link text: the share of the main text's characters that are link text;
- headline list: the share of the main text inside list items that carry a
  link, when there are several such items.
"""

from __future__ import annotations

from lxml.etree import _Element

__all__ = ["MAX_HEADLINE_LIST_RATIO", "MAX_LINK_TEXT_RATIO", "MIN_HEADLINE_ITEMS", "boilerplate_reason"]

MAX_LINK_TEXT_RATIO = 0.5
MAX_HEADLINE_LIST_RATIO = 0.6
# A short list of links inside an article (further reading, sources) is not an index page.
MIN_HEADLINE_ITEMS = 5


def boilerplate_reason(body: _Element) -> str | None:
    """Why the extracted `body` is boilerplate only, or None if it reads as an article."""
    total = _chars(body)
    if total == 0:
        return None
    link_chars = sum(_chars(ref) for ref in body.iter("ref"))
    if link_chars / total > MAX_LINK_TEXT_RATIO:
        return f"boilerplate only: {link_chars / total:.0%} of the main text is link text (limit {MAX_LINK_TEXT_RATIO:.0%})"
    headlines = [item for item in body.iter("item") if next(item.iter("ref"), None) is not None]
    headline_chars = sum(_chars(item) for item in headlines)
    if len(headlines) >= MIN_HEADLINE_ITEMS and headline_chars / total > MAX_HEADLINE_LIST_RATIO:
        return (
            f"boilerplate only: a list of {len(headlines)} linked headlines holds {headline_chars / total:.0%} "
            f"of the main text (limit {MAX_HEADLINE_LIST_RATIO:.0%})"
        )
    return None


def _chars(element: _Element) -> int:
    return sum(len(piece.strip()) for piece in element.itertext())
