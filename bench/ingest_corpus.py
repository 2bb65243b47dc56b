"""The ingest benchmark's corpus: many distinct pages made from the demo site's articles (pure, seeded).

Each page is one demo article rendered by the demo site's own template, with a
varied title and a recombined body: some of its own paragraphs, shuffled, and one
or two borrowed from other articles. The same seed and size always give the same
pages, so figures from different runs measure the same work.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from math import ceil

from deploy.demo_site import Article, render_article

__all__ = ["BenchPage", "build_corpus", "percentile"]

_TITLE_OPENINGS = ("", "", "Opinion: ", "Update: ", "Analysis: ", "Weekend read: ", "From the archive: ")
_TITLE_ENDINGS = ("", "", " (revisited)", ", one year on", ": what readers said", ", in pictures", " — a second look")


@dataclass(frozen=True)
class BenchPage:
    path: str
    title: str
    html: str
    sentiment: str  # the article's it was made from: an answer key for scripted labels


def build_corpus(articles: list[Article], size: int, *, seed: int = 2024) -> list[BenchPage]:
    if size < 1:
        raise ValueError(f"a corpus needs at least one page, not {size}")
    if len(articles) < 2:
        raise ValueError("recombining needs at least two articles")
    rng = random.Random(seed)
    pages = []
    for number in range(size):
        base = rng.choice(articles)
        own = list(base.paragraphs)
        rng.shuffle(own)
        kept = own[: max(2, len(own) - rng.randint(0, 2))]
        others = [a for a in articles if a is not base]
        borrowed = [rng.choice(rng.choice(others).paragraphs) for _ in range(rng.randint(1, 2))]
        paragraphs = kept + borrowed
        rng.shuffle(paragraphs)
        title = f"{rng.choice(_TITLE_OPENINGS)}{base.title}{rng.choice(_TITLE_ENDINGS)}"
        article = Article(
            slug=f"{base.slug}-{number:05d}",
            title=title,
            summary=base.summary,
            sentiment=base.sentiment,
            topic=base.topic,
            paragraphs=tuple(paragraphs),
        )
        # The sidebar lists the demo's own articles, as on the demo site.
        html = render_article(article, [article, *articles])
        pages.append(BenchPage(path=f"/articles/{article.slug}.html", title=title, html=html, sentiment=base.sentiment))
    return pages


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..100) of `values`."""
    if not values:
        raise ValueError("no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, not {q}")
    ranked = sorted(values)
    return ranked[max(0, ceil(q / 100 * len(ranked)) - 1)]
