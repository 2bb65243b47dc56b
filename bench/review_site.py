"""A second site for the run-time benchmark: seeded product and film reviews with known sentiment (pure).

    pages, labels = review_records(200, labels=90, seed=2026, first_offset=...)

Pages of another kind than the demo site's news articles: each review is made of sentences drawn from
templates for its subject (a product or a film) and its verdict (positive or negative), so the answer
key is known. Labels are sentiment labels on passages (paragraphs) of the reviews, spread over the site,
as a person labelling in doccano would record them. The same seed and sizes always give the same records.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from hashlib import sha256

from streams.records import LabelRecorded, PageCleaned, SentimentLabel

__all__ = ["REVIEW_DOMAIN", "review_records"]

REVIEW_DOMAIN = "reviews.bench.test"

_PRODUCTS = (
    "kettle", "blender", "desk lamp", "backpack", "rain jacket", "coffee grinder", "toaster", "headphones",
    "hiking boots", "office chair", "air fryer", "electric toothbrush", "bike light", "tent", "phone case",
)  # fmt: skip
_BRANDS = ("Aldren", "Brightwell", "Corvo", "Dunmore", "Elsby", "Fennick", "Garrow", "Halden", "Iverly", "Juniper")
_FILM_WORDS = (
    "Silver", "Harbour", "Winter", "Long", "Quiet", "Last", "Glass", "Northern", "Hidden", "Paper",
    "River", "Crown", "Summer", "Broken", "Golden", "Distant",
)  # fmt: skip
_FILM_NOUNS = ("Road", "Garden", "Letters", "Tide", "Orchard", "Signal", "Country", "House", "Light", "Season")

_SENTENCES = {
    ("product", "positive"): (
        "The {name} does exactly what it promises, and it does it beautifully.",
        "After a month of daily use the {name} still feels solid and reliable.",
        "Setting it up took two minutes and the instructions were clear and friendly.",
        "It is quiet, well made and a genuine pleasure to use every morning.",
        "For the price, this is excellent value and I would happily buy it again.",
        "The finish is lovely and every part fits together with real care.",
        "Customer service answered within a day and were warm and helpful.",
        "I recommend the {name} without hesitation to anyone who asks.",
    ),
    ("product", "negative"): (
        "The {name} stopped working properly within a week, which is disappointing.",
        "The build feels cheap and flimsy, and a part cracked on the second day.",
        "The instructions were confusing and setting it up was a frustrating chore.",
        "It is noisy, awkward and unpleasant to use, even for simple tasks.",
        "For the price, this is poor value and I regret buying it.",
        "The finish scratched at once and the parts never fit together well.",
        "Customer service ignored two emails and then refused a refund.",
        "I would not recommend the {name} to anyone; avoid it.",
    ),
    ("film", "positive"): (
        "{name} is a warm, moving film with a wonderful central performance.",
        "The script is sharp and funny, and the story builds to a satisfying end.",
        "Every frame is beautifully shot, and the music lifts the quieter scenes.",
        "The cast is superb, and the two leads share a delightful, natural chemistry.",
        "It is the kind of film you leave smiling and want to see again.",
        "The pacing is confident and the two hours pass in a happy rush.",
        "A generous, hopeful story told with real skill and charm.",
        "{name} is easily one of the best films of the year.",
    ),
    ("film", "negative"): (
        "{name} is a dull, lifeless film with a wooden central performance.",
        "The script is clumsy and humourless, and the story collapses at the end.",
        "It looks murky and cheap, and the music drowns out the few good scenes.",
        "The cast is wasted, and the two leads share no chemistry at all.",
        "It is the kind of film you leave annoyed and want to forget.",
        "The pacing is sluggish and the two hours drag painfully.",
        "A bleak, tiresome story told without skill or care.",
        "{name} is easily one of the worst films of the year.",
    ),
}
_NEUTRAL = (
    "I used it for about three weeks before writing this review.",
    "The running time is just under two hours.",
    "It comes in three colours and two sizes.",
    "I watched it on a weekday evening with two friends.",
    "The box contains the {name}, a cable and a short manual.",
    "It was released this spring after a long delay.",
)


def _subject(rng: random.Random, number: int) -> tuple[str, str, str]:
    """(kind, name, title) of the review `number`."""
    if rng.random() < 0.5:
        name = f"{rng.choice(_BRANDS)} {rng.choice(_PRODUCTS)}"
        return "product", name, f"{name} review ({number})"
    name = f"The {rng.choice(_FILM_WORDS)} {rng.choice(_FILM_NOUNS)}"
    return "film", name, f"Film review: {name} ({number})"


def _paragraphs(rng: random.Random, kind: str, sentiment: str, name: str) -> list[str]:
    pool = list(_SENTENCES[(kind, sentiment)])
    rng.shuffle(pool)
    paragraphs = []
    for start in range(0, rng.choice((6, 8)), 2):
        sentences = pool[start : start + 2]
        if rng.random() < 0.3:
            sentences.insert(rng.randint(0, len(sentences)), rng.choice(_NEUTRAL))
        paragraphs.append(" ".join(sentences).format(name=name))
    return paragraphs


def review_records(
    pages: int, labels: int, *, seed: int = 2026, base_url: str = f"http://{REVIEW_DOMAIN}/"
) -> tuple[list[PageCleaned], list[LabelRecorded]]:
    """`pages` reviews as the cleaner would publish them (each positive or negative, seeded),
    and `labels` sentiment labels on their paragraphs, each with its review's sentiment, spread evenly
    over the reviews (at most one per paragraph)."""
    if pages < 1 or labels < 0:
        raise ValueError(f"a review site needs a page or more and no negative label count, not {pages}, {labels}")
    rng = random.Random(seed)
    fetched_at = datetime(2026, 2, 1, tzinfo=UTC)
    records: list[PageCleaned] = []
    passages: list[tuple[str, str, str]] = []  # (page url, paragraph, sentiment)
    for number in range(pages):
        sentiment = rng.choice(("positive", "negative"))
        kind, name, title = _subject(rng, number)
        paragraphs = _paragraphs(rng, kind, sentiment, name)
        url = f"{base_url}reviews/{number:04d}.html"
        text = "\n\n".join(paragraphs)
        records.append(
            PageCleaned(
                url=url,
                domain=REVIEW_DOMAIN,
                title=title,
                summary="",
                text=text,
                language="en",
                content_sha256=sha256(text.encode()).hexdigest(),
                fetched_at=fetched_at,
                crawl_id="bench-run-time",
            )
        )
        passages.extend((url, paragraph, sentiment) for paragraph in paragraphs)
    if labels > len(passages):
        raise ValueError(f"{labels} labels asked for, but the reviews have only {len(passages)} paragraphs")
    step = len(passages) / labels if labels else 0
    chosen = [passages[int(index * step)] for index in range(labels)]
    label_events = [
        LabelRecorded(
            label_id=f"reviews:{number:04d}",
            source="doccano",
            annotator="bench",
            label=SentimentLabel(text=paragraph, sentiment=sentiment),
            page_url=url,
        )
        for number, (url, paragraph, sentiment) in enumerate(chosen)
    ]
    return records, label_events
