"""Training data, built from records alone (no I/O): SFT pairs, labels, reward pairs, held-out prompts.

The expansion prompt format is fixed, so that training, evaluation and serving agree:

    prompt     = "<title>\\n\\n"               (or "<title>\\n<summary>\\n\\n" when the page has a summary)
    completion = "<body><eos>"                 (body cut at a sentence end within MAX_COMPLETION_CHARS)

that is, a headline and a blank line ask for the text that follows it; the model ends the
text with its tokenizer's end-of-text token (`<|endoftext|>` for GPT-2 and bootstrapped tokenizers).

What each kind of label teaches (one reward model scores "toward the anchor sentiment",
`settings.target_sentiment`; a judgement made toward another target counts with the sign flipped,
see `reward_sign`):

    sentiment    anchor-labelled passages are chosen over the others (reward pairs)
    preference   chosen over rejected, both after the prompt as the API shows it (reward pair)
    expansion    prompt -> completion (SFT pair)
    rating       thumbs up -> SFT pair; up over down on the same prompt and target (reward pairs)
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from streams.records import (
    ExpansionLabel,
    LabelRecorded,
    PageCleaned,
    PreferenceLabel,
    RatingLabel,
    SentimentLabel,
)
from trainer.generic_prompts import GENERIC_PROMPTS

__all__ = [
    "HELDOUT_PERCENT",
    "JUDGE_PERCENT",
    "MAX_COMPLETION_CHARS",
    "PROMPT_END",
    "ExpansionPair",
    "LabelSet",
    "LabelSplit",
    "PreferencePair",
    "TrainingData",
    "build",
    "corpus_texts",
    "current_labels",
    "cut_completion",
    "expansion_pairs",
    "first_sentences",
    "format_prompt",
    "heldout_prompts",
    "is_held_out",
    "judged_pairs",
    "labelled_expansions",
    "latest_pages",
    "page_prompts",
    "preference_pairs",
    "reward_sign",
    "shown_prompt",
    "split_by_sentiment",
    "split_labels",
    "split_pages",
    "target_demonstrations",
]

PROMPT_END = "\n\n"
MAX_COMPLETION_CHARS = 800  # long enough for a paragraph, short enough that the model sees the end of text
HELDOUT_PERCENT = 20
HELDOUT_PROMPTS = 64  # the gate's and the benchmark's held-out prompts (setting gate_heldout_prompts)
MIN_PROMPT_WORDS = 4  # a first sentence shorter than this asks for nothing in particular
MAX_PROMPT_CHARS = 200
FALLBACK_TITLE_WORDS = 8
PAIRS_PER_CHOSEN = 4

_SENTENCE_END = re.compile(r"[.!?][\"')\]]?(?=\s)")


@dataclass(frozen=True)
class ExpansionPair:
    prompt: str
    completion: str
    url: str


@dataclass(frozen=True)
class PreferencePair:
    """A Bradley-Terry pair: `chosen` should score higher than `rejected`."""

    chosen: str
    rejected: str


@dataclass(frozen=True)
class LabelSet:
    """The labels in force: the latest event per label_id, deleted ones removed."""

    sentiment: dict[str, SentimentLabel] = field(default_factory=dict)
    preference: dict[str, PreferenceLabel] = field(default_factory=dict)
    expansion: dict[str, ExpansionLabel] = field(default_factory=dict)
    rating: dict[str, RatingLabel] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingData:
    sft_pairs: list[ExpansionPair]
    train_prompts: list[str]
    heldout_prompts: list[str]
    reward_pairs: list[PreferencePair]
    labels: LabelSet
    corpus: list[str]
    # The training pages' texts only (title, summary, body): what a bootstrapped policy may pretrain on without
    # reading the held-out pages its gate prompts come from (`corpus` covers every page, for the tokenizer).
    pretraining_texts: list[str] = field(default_factory=list)

    def stats(self) -> dict[str, int]:
        return {
            "sft_pairs": len(self.sft_pairs),
            "train_prompts": len(self.train_prompts),
            "heldout_prompts": len(self.heldout_prompts),
            "reward_pairs": len(self.reward_pairs),
            "sentiment_labels": len(self.labels.sentiment),
            "preference_labels": len(self.labels.preference),
            "expansion_labels": len(self.labels.expansion),
            "rating_labels": len(self.labels.rating),
        }


def format_prompt(title: str, summary: str = "") -> str:
    title, summary = " ".join(title.split()), " ".join(summary.split())
    return f"{title}\n{summary}{PROMPT_END}" if summary else f"{title}{PROMPT_END}"


def cut_completion(text: str, limit: int = MAX_COMPLETION_CHARS) -> str:
    """The text up to `limit` characters, ending at the last sentence end inside it when there is one."""
    text = text.strip()
    if len(text) <= limit:
        return text
    head = text[: limit + 1]
    ends = [match.end() for match in _SENTENCE_END.finditer(head)]
    return head[: ends[-1]] if ends else text[:limit].rstrip()


def _title_of(page: PageCleaned) -> str:
    # A page without a title still teaches expansion: its opening words stand in as the headline.
    return page.title.strip() or " ".join(page.text.split()[:FALLBACK_TITLE_WORDS])


def latest_pages(pages: Iterable[PageCleaned]) -> list[PageCleaned]:
    """One page per URL (the last one given wins: a recrawl replaces the page), sorted by URL."""
    by_url = {page.url: page for page in pages}
    return [by_url[url] for url in sorted(by_url)]


def is_held_out(url: str, percent: int = HELDOUT_PERCENT) -> bool:
    """Deterministic split by a hash of the URL: a page stays on its side of the split across runs."""
    bucket = int.from_bytes(hashlib.sha256(url.encode()).digest()[:8], "big") % 100
    return bucket < percent


def split_pages(
    pages: list[PageCleaned], percent: int = HELDOUT_PERCENT
) -> tuple[list[PageCleaned], list[PageCleaned]]:
    """(train, held out). With two pages or more each side gets at least one: the page with the
    lowest URL hash joins an empty held-out side, the highest an empty training side."""
    held = [page for page in pages if is_held_out(page.url, percent)]
    train = [page for page in pages if not is_held_out(page.url, percent)]
    if len(pages) >= 2 and (not held or not train):
        ranked = sorted(pages, key=lambda page: hashlib.sha256(page.url.encode()).digest())
        moved = ranked[0] if not held else ranked[-1]
        rest = [page for page in pages if page is not moved]
        train, held = (rest, [moved]) if not held else ([moved], rest)
    return train, held


def expansion_pairs(pages: Iterable[PageCleaned]) -> list[ExpansionPair]:
    """Two pairs per page: the title alone, and title plus summary (when there is one), both asking for the body.

    Completions carry no end-of-text token yet: the SFT stage appends its tokenizer's own.
    """
    pairs = []
    for page in pages:
        completion = cut_completion(page.text)
        title = _title_of(page)
        pairs.append(ExpansionPair(format_prompt(title), completion, page.url))
        if page.summary.strip():
            pairs.append(ExpansionPair(format_prompt(title, page.summary), completion, page.url))
    return pairs


def target_demonstrations(
    pairs: Sequence[ExpansionPair], scores: Mapping[str, float], sign: int, share: float
) -> list[ExpansionPair]:
    """The pairs whose completions the reward model ranks furthest toward a target: the `share` of them (at least
    one) with the highest `sign` x score (`scores`: by completion; `sign`: `reward_sign` of the target), in their
    given order. Ties keep the given order, so the choice is deterministic."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], not {share}")
    if not pairs:
        return []
    count = max(1, round(len(pairs) * share))
    ranked = sorted(range(len(pairs)), key=lambda index: -sign * scores[pairs[index].completion])
    return [pairs[index] for index in sorted(ranked[:count])]


def page_prompts(pages: Iterable[PageCleaned]) -> list[str]:
    """Each page's prompts as SFT learns them and the API takes them: the title alone, and the title with
    the summary when there is one (`expansion_pairs`); a prompt two pages share counts once."""
    return list(dict.fromkeys(pair.prompt for pair in expansion_pairs(pages)))


def first_sentences(pages: Iterable[PageCleaned]) -> list[str]:
    """The first sentence of every paragraph of the pages, as prompts: text no title is, never trained on
    when the pages are held out; too short or too long sentences left out, each once."""
    sentences = []
    for page in pages:
        for paragraph in page.text.split("\n\n"):
            paragraph = " ".join(paragraph.split())
            end = _SENTENCE_END.search(paragraph + " ")
            sentence = paragraph[: end.end()] if end else paragraph
            if len(sentence.split()) >= MIN_PROMPT_WORDS and len(sentence) <= MAX_PROMPT_CHARS:
                sentences.append(format_prompt(sentence))
    return list(dict.fromkeys(sentences))


def heldout_prompts(
    held: list[PageCleaned],
    count: int = HELDOUT_PROMPTS,
    generic: Iterable[str] = GENERIC_PROMPTS,
    trained: Collection[str] = (),
) -> list[str]:
    """Up to `count` prompts no policy was trained on, taken in turn from three sources so that each is
    represented: the held-out pages' prompts (titles, titles with summaries), the first sentences of their
    paragraphs, and `generic` prompts that are no site's title; none of the `trained` prompts (a held-out
    page may share its title with a training page). No held-out page, no prompt: the generic ones alone
    would let a run without held-out pages pass its data check."""
    if not held:
        return []
    sources = [page_prompts(held), first_sentences(held), [format_prompt(prompt) for prompt in generic]]
    sources = [[prompt for prompt in source if prompt not in trained] for source in sources]
    chosen: dict[str, None] = {}
    for turn in range(max(len(source) for source in sources)):
        for source in sources:
            if len(chosen) < count and turn < len(source):
                chosen.setdefault(source[turn])
    return list(chosen)


def current_labels(events: Iterable[LabelRecorded]) -> LabelSet:
    """Replay label events in log order: the latest per label_id wins, `deleted` removes it.

    Events of one label_id share a Kafka key, hence a partition, so log order is their order.
    """
    latest: dict[str, LabelRecorded] = {}
    for event in events:
        if event.action == "deleted":
            latest.pop(event.label_id, None)
        else:
            latest[event.label_id] = event
    labels = LabelSet()
    by_kind = {
        "sentiment": labels.sentiment,
        "preference": labels.preference,
        "expansion": labels.expansion,
        "rating": labels.rating,
    }
    for label_id in sorted(latest):
        label = latest[label_id].label
        by_kind[label.kind][label_id] = label
    return labels


def split_by_sentiment(sentiments: dict[str, SentimentLabel], target: str) -> tuple[list[str], list[str]]:
    """(texts with the target sentiment, texts without it), in label_id order; case and spaces ignored."""
    target = target.strip().lower()
    ordered = [label for _, label in sorted(sentiments.items())]
    return (
        [label.text for label in ordered if label.sentiment.strip().lower() == target],
        [label.text for label in ordered if label.sentiment.strip().lower() != target],
    )


def preference_pairs(
    sentiments: dict[str, SentimentLabel], target: str, pairs_per_chosen: int = PAIRS_PER_CHOSEN
) -> list[PreferencePair]:
    """Each passage labelled with the target sentiment is chosen over up to `pairs_per_chosen` passages
    labelled otherwise, picked round-robin in label_id order (deterministic, every rejected text used)."""
    chosen, rejected = split_by_sentiment(sentiments, target)
    if not chosen or not rejected:
        return []
    per_chosen = min(pairs_per_chosen, len(rejected))
    return [
        PreferencePair(text, rejected[(i * per_chosen + j) % len(rejected)])
        for i, text in enumerate(chosen)
        for j in range(per_chosen)
    ]


def shown_prompt(prompt: str) -> str:
    """A prompt as the API shows it to the policy (the manifest's template "{prompt}\\n\\n")."""
    return prompt if prompt.endswith(PROMPT_END) else prompt + PROMPT_END


def reward_sign(target: str | None, anchor: str) -> int:
    """+1 when a judgement toward `target` is a judgement toward the anchor sentiment, else -1.

    The reward model scores "toward the anchor"; any other label of the sentiment project is
    read as "away from the anchor" (exact for a two-label project such as positive/negative).
    A judgement without a target was made toward the default target, the anchor.
    """
    return 1 if target is None or target.strip().lower() == anchor.strip().lower() else -1


def labelled_expansions(labels: LabelSet) -> list[ExpansionPair]:
    """SFT pairs from people: approved or corrected expansions, and thumbs-up generations."""
    approved = [(label_id, label.prompt, label.completion) for label_id, label in sorted(labels.expansion.items())]
    approved += [
        (label_id, label.prompt, label.completion)
        for label_id, label in sorted(labels.rating.items())
        if label.rating == "up"
    ]
    return [
        ExpansionPair(shown_prompt(prompt), cut_completion(completion), f"label:{label_id}")
        for label_id, prompt, completion in approved
    ]


def _oriented(chosen: str, rejected: str, sign: int) -> PreferencePair:
    return PreferencePair(chosen, rejected) if sign > 0 else PreferencePair(rejected, chosen)


def judged_pairs(labels: LabelSet, anchor: str, pairs_per_chosen: int = PAIRS_PER_CHOSEN) -> list[PreferencePair]:
    """Reward pairs (toward the anchor) from preference labels and from ratings: on one prompt and
    target, each thumbs-up generation is chosen over up to `pairs_per_chosen` thumbs-down ones
    (round-robin in label_id order). Texts are the prompt as shown plus the completion, as PPO scores them."""
    pairs = [
        _oriented(
            shown_prompt(label.prompt) + label.chosen,
            shown_prompt(label.prompt) + label.rejected,
            reward_sign(label.target, anchor),
        )
        for _, label in sorted(labels.preference.items())
    ]
    groups: dict[tuple[str, int], tuple[list[str], list[str]]] = {}
    for _, label in sorted(labels.rating.items()):
        ups, downs = groups.setdefault((shown_prompt(label.prompt), reward_sign(label.target, anchor)), ([], []))
        (ups if label.rating == "up" else downs).append(label.completion)
    for (prompt, sign), (ups, downs) in groups.items():
        per_up = min(pairs_per_chosen, len(downs))
        pairs.extend(
            _oriented(prompt + up, prompt + downs[(i * per_up + j) % len(downs)], sign)
            for i, up in enumerate(ups)
            for j in range(per_up)
        )
    return pairs


def corpus_texts(pages: Iterable[PageCleaned], labels: LabelSet) -> list[str]:
    """Every text a bootstrapped tokenizer should cover: pages (title, summary, body) and labelled texts."""
    texts = []
    for page in pages:
        texts.extend(part for part in (page.title, page.summary, page.text) if part.strip())
    texts.extend(label.text for label in labels.sentiment.values())
    texts.extend(pair.prompt + pair.completion for pair in labelled_expansions(labels))
    return texts


JUDGE_PERCENT = 20  # share of sentiment labels (by text hash) the judge learns from and the reward model never sees


@dataclass(frozen=True)
class LabelSplit:
    """Sentiment labels split between the reward model and the independent judge (trainer/judge.py)."""

    reward: dict[str, SentimentLabel]  # what the reward model may learn from
    judge: dict[str, SentimentLabel]  # what only the judge learns from


def split_labels(sentiments: dict[str, SentimentLabel], percent: int = JUDGE_PERCENT) -> LabelSplit:
    """Deterministic split by a hash of the labelled text: one passage labelled by two people stays on one side."""
    judge_ids = {label_id for label_id, label in sentiments.items() if is_held_out(label.text, percent)}
    return LabelSplit(
        reward={key: label for key, label in sentiments.items() if key not in judge_ids},
        judge={key: label for key, label in sentiments.items() if key in judge_ids},
    )


def build(
    pages: Iterable[PageCleaned],
    label_events: Iterable[LabelRecorded],
    target_sentiment: str,
    heldout_count: int = HELDOUT_PROMPTS,
) -> TrainingData:
    """All the data of one training run, from the records in log order; `target_sentiment` is the
    reward model's anchor, `heldout_count` how many held-out prompts to evaluate on (`heldout_prompts`)."""
    unique = latest_pages(pages)
    train, held = split_pages(unique)
    labels = current_labels(label_events)
    sft_pairs = expansion_pairs(train) + labelled_expansions(labels)
    train_prompts = sorted({pair.prompt for pair in sft_pairs})
    return TrainingData(
        sft_pairs=sft_pairs,
        train_prompts=train_prompts,
        heldout_prompts=heldout_prompts(held, heldout_count, trained=set(train_prompts)),
        reward_pairs=preference_pairs(split_labels(labels.sentiment).reward, target_sentiment)
        + judged_pairs(labels, target_sentiment),
        labels=labels,
        corpus=corpus_texts(unique, labels),
        pretraining_texts=corpus_texts(train, LabelSet()),
    )
