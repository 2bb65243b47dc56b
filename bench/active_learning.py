"""Active-learning benchmark: how accurate is the reward model after 20, 40, 80 and 160 labels when people label
the passages `consumers.active_learning` chooses, against the passages in the order they arrived?

    .venv/bin/python bench/active_learning.py [--budgets 20,40,80,160] [--seeds 0,1,2] [--reviews 100]
                                              [--reward-epochs E] [--site-cap N] [--no-judge]

No services needed. The ground truth: every paragraph of the demo site's 30 articles
(deploy/demo_site/articles.json) labelled with its article's sentiment (`learning.demo_records`), and every
paragraph of `--reviews` seeded reviews (`review_site.review_records`, a second site of template-made product
and film reviews: many near-identical paragraphs). Pages are split by URL hash: a quarter are held out, the
reward model's accuracy is measured on their paragraphs; the rest are the pool to label.

For each seed and strategy, a scripted annotator answers from the ground truth, in rounds: the queue is filled
up to the next budget by `active_learning.choose` (`active`: the current reward model's uncertainty, its
disagreement with the independent judge, diversity on the judge's embeddings and a per-site cap; `arrival`:
the pool in arrival order, the pages in a seeded random order as an interleaving crawl would bring them), the
passages are labelled, and the pipeline's reward stage (`trainer.stages.train_reward` on
`data.preference_pairs`) trains a fresh reward model from a fixed body: the seed's bootstrapped tiny GPT-2
(the product's tokenizer and shape, random weights). Its accuracy on the held-out paragraphs: the share on
the right side of its own threshold (`evaluate.target_threshold` on the labels it learnt from). Before the
first round there is no model: the first `active` queue is chosen by diversity alone. The judge (MiniLM
embeddings and a logistic regression, `trainer.judge`) is fit on the labels so far, as a second opinion for
the choice only (the reward model learns from every label here, not from the product's share).

Prints one row per budget: each strategy's mean accuracy over the seeds with its 95 % t-interval, and whether
active choice reaches arrival order's accuracy at the largest budget with at most half of it.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean, stdev

import torch
from machine import describe as describe_machine
from review_site import review_records
from scipy.stats import t as scipy_t

from consumers.active_learning import SITE_CAP, STRATEGIES, Candidate, Strategy, choose, reward_probabilities
from consumers.passages import passage_key
from ctrlgpt import logs
from ctrlgpt.settings import Settings
from deploy.demo_site import load_articles
from models.reward_scoring import score
from streams.records import LabelRecorded, PageCleaned, SentimentLabel
from trainer import bootstrap, data, evaluate, hf, judge, stages
from trainer.run_config import RunConfig

BUDGETS = "20,40,80,160"
SEEDS = "0,1,2"
REVIEWS = 100
HELDOUT_PERCENT = 25
TARGET = "positive"
CONFIDENCE = 0.95
CHANCE = 0.5  # the accuracy counted for a round with no model (the labels so far all of one sentiment)


@dataclass(frozen=True)
class Passage:
    key: str
    text: str
    site: str
    page_url: str
    sentiment: str


def passages_of(pages: Sequence[PageCleaned], labels: Sequence[LabelRecorded]) -> list[Passage]:
    """The labelled paragraphs as passages of their pages, in page order then paragraph order."""
    sites = {page.url: page.domain for page in pages}
    order = {page.url: number for number, page in enumerate(pages)}
    ordered = sorted(labels, key=lambda event: order[event.page_url])  # stable: paragraph order kept
    passages = []
    per_page: dict[str, int] = {}
    for event in ordered:
        label = event.label
        if not isinstance(label, SentimentLabel) or event.page_url is None:
            raise ValueError(f"label {event.label_id} is not a sentiment label of a page")
        index = per_page[event.page_url] = per_page.get(event.page_url, -1) + 1
        passages.append(
            Passage(
                passage_key(event.page_url, index, label.text),
                label.text,
                sites[event.page_url],
                event.page_url,
                label.sentiment,
            )
        )
    return passages


def held_out(url: str, percent: int = HELDOUT_PERCENT) -> bool:
    """Whole pages are held out (by URL hash), so no paragraph of a held-out page is in the pool."""
    return int(hashlib.sha256(url.encode()).hexdigest(), 16) % 100 < percent


def arrival_order(passages: Sequence[Passage], seed: int) -> list[Passage]:
    """The pages in a seeded random order (an interleaving crawl), each page's paragraphs in order."""
    urls = list(dict.fromkeys(passage.page_url for passage in passages))
    random.Random(seed).shuffle(urls)
    rank = {url: number for number, url in enumerate(urls)}
    return sorted(passages, key=lambda passage: rank[passage.page_url])  # stable: paragraph order kept


def accuracy(scores: Sequence[float], threshold: float, sentiments: Sequence[str], target: str = TARGET) -> float:
    if not scores or len(scores) != len(sentiments):
        raise ValueError(f"{len(scores)} scores for {len(sentiments)} passages")
    right = sum((value > threshold) == (sentiment == target) for value, sentiment in zip(scores, sentiments))
    return right / len(scores)


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean over the seeds with its Student-t interval (a point with one seed)."""
    if not values:
        raise ValueError("no values")
    mean = fmean(values)
    if len(values) < 2:
        return Interval(mean, mean, mean)
    half = scipy_t.ppf((1 + confidence) / 2, len(values) - 1) * stdev(values) / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half)


def labels_to_reach(curve: dict[int, float], target: float) -> int | None:
    """The smallest budget whose mean accuracy reaches `target`, None when none does."""
    return next((budget for budget in sorted(curve) if curve[budget] >= target), None)


def table(results: dict[Strategy, dict[int, list[float]]]) -> str:
    budgets = sorted(next(iter(results.values())))
    lines = [
        "| labels | " + " | ".join(f"{strategy} (mean [95 % interval])" for strategy in results) + " |",
        "|---:|" + "---|" * len(results),
    ]
    lines += [
        f"| {budget} | " + " | ".join(str(t_interval(per[budget])) for per in results.values()) + " |"
        for budget in budgets
    ]
    return "\n".join(lines)


def verdict(results: dict[Strategy, dict[int, list[float]]]) -> str:
    largest = max(results["arrival"])
    goal = fmean(results["arrival"][largest])
    reached = labels_to_reach({budget: fmean(values) for budget, values in results["active"].items()}, goal)
    met = reached is not None and reached <= largest / 2
    where = "never, within the budgets" if reached is None else f"at {reached} labels"
    return (
        f"arrival order's accuracy at {largest} labels: {goal:.3f}; active choice reaches it {where}: "
        f"goal (at most {largest // 2} labels) {'met' if met else 'NOT met'}"
    )


class Annotated:
    """One seed's fixed parts: the reward model's body, the judge's embeddings, the held-out passages."""

    def __init__(self, args: argparse.Namespace, pool: list[Passage], heldout: list[Passage], seed: int, work: Path):
        self.args, self.pool, self.heldout, self.seed, self.work = args, pool, heldout, seed, work
        settings = Settings().model_copy(
            update={"data_dir": work, "device": "cpu", "seed": seed, "reward_epochs": args.reward_epochs}
        )
        self.config = RunConfig.from_settings(settings)
        texts = [passage.text for passage in pool + heldout]
        shape = bootstrap.TinyGPT2()
        self.tokenizer = bootstrap.train_tokenizer(texts, shape)
        torch.manual_seed(seed)
        self.body_dir = hf.save(bootstrap.tiny_gpt2(self.tokenizer, shape), self.tokenizer, work / "body")
        self.embed = args.embeddings

    def run(self, strategy: Strategy) -> dict[int, float]:
        remaining = arrival_order(self.pool, self.seed)
        labelled: list[Passage] = []
        reward_p: dict[str, float] = {}
        judge_p: dict[str, float] = {}
        curve = {}
        for budget in self.args.budgets:
            candidates = [
                Candidate(
                    passage.key,
                    passage.text,
                    passage.site,
                    reward_p.get(passage.key),
                    judge_p.get(passage.key),
                    None if self.embed is None else self.embed([passage.text])[0],
                )
                for passage in remaining
            ]
            picked = {
                one.key
                for one in choose(candidates, budget - len(labelled), strategy=strategy, site_cap=self.args.site_cap)
            }
            labelled += [passage for passage in remaining if passage.key in picked]
            remaining = [passage for passage in remaining if passage.key not in picked]
            curve[budget], reward_p = self._train(labelled, remaining, f"{strategy}-{budget}")
            judge_p = self._judge(labelled, remaining)
            print(f"  seed {self.seed} {strategy:7} {budget:4} labels: accuracy {curve[budget]:.3f}", flush=True)
        return curve

    def _train(self, labelled: list[Passage], remaining: list[Passage], name: str) -> tuple[float, dict[str, float]]:
        sentiments = {
            f"bench:{passage.key}": SentimentLabel(text=passage.text, sentiment=passage.sentiment)
            for passage in labelled
        }
        pairs = data.preference_pairs(sentiments, TARGET)
        if not pairs:
            return CHANCE, {}
        scorer = stages.train_reward(self.config, self.body_dir, self.tokenizer, pairs, self.work / name)
        model = scorer.model.eval()
        threshold = evaluate.target_threshold(
            model,
            self.tokenizer,
            [passage.text for passage in labelled if passage.sentiment == TARGET],
            [passage.text for passage in labelled if passage.sentiment != TARGET],
        )
        heldout_scores = score(model, self.tokenizer, [passage.text for passage in self.heldout])
        correct = accuracy(heldout_scores, threshold, [passage.sentiment for passage in self.heldout])
        pool_scores = score(model, self.tokenizer, [passage.text for passage in remaining])
        return correct, dict(
            zip([passage.key for passage in remaining], reward_probabilities(pool_scores, threshold), strict=True)
        )

    def _judge(self, labelled: list[Passage], remaining: list[Passage]) -> dict[str, float]:
        targets = [passage.sentiment == TARGET for passage in labelled]
        if self.embed is None or not remaining or min(sum(targets), len(targets) - sum(targets)) < 2:
            return {}
        classifier = judge.fit_classifier(self.embed([passage.text for passage in labelled]), targets)
        probabilities = classifier.predict_proba(self.embed([passage.text for passage in remaining]))[:, 1]
        return {passage.key: float(p) for passage, p in zip(remaining, probabilities, strict=True)}


def ground_truth(reviews: int) -> list[Passage]:
    sys.path.insert(0, str(Path(__file__).parent))
    from learning import demo_records  # heavy (trl): imported when the benchmark runs, not by its tests

    demo_pages, demo_labels = demo_records(load_articles())
    review_pages, _ = review_records(reviews, 0)
    paragraphs = sum(len(page.text.split("\n\n")) for page in review_pages)
    review_pages, review_labels = review_records(reviews, paragraphs)
    return passages_of(demo_pages, demo_labels) + passages_of(review_pages, review_labels)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", default=BUDGETS, help="label counts to measure at, ascending")
    parser.add_argument("--seeds", default=SEEDS)
    parser.add_argument("--reviews", type=int, default=REVIEWS, help="reviews of the second site")
    parser.add_argument("--reward-epochs", type=float, default=Settings().reward_epochs)
    parser.add_argument("--site-cap", type=int, default=SITE_CAP, help=f"default {SITE_CAP}")
    parser.add_argument("--no-judge", action="store_true", help="no MiniLM judge: no disagreement, word-set distances")
    args = parser.parse_args(argv)
    args.budgets = [int(value) for value in args.budgets.split(",")]
    if args.budgets != sorted(set(args.budgets)) or args.budgets[0] < 1:
        parser.error("--budgets must be ascending positive label counts")
    args.seeds = [int(value) for value in args.seeds.split(",")]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logs.configure("bench-active-learning")
    passages = ground_truth(args.reviews)
    pool = [passage for passage in passages if not held_out(passage.page_url)]
    heldout = [passage for passage in passages if held_out(passage.page_url)]
    if args.budgets[-1] > len(pool):
        raise SystemExit(f"the pool has {len(pool)} passages, fewer than {args.budgets[-1]} labels: more --reviews")
    args.embeddings = None if args.no_judge else judge.Embeddings(judge.load_encoder(None, torch.device("cpu")))
    if args.embeddings is not None:
        args.embeddings([passage.text for passage in passages])  # once, in batches: every round reads them
    print(describe_machine(), flush=True)
    print(
        f"{len(pool)} passages to label, {len(heldout)} held out; budgets {args.budgets}, seeds {args.seeds}",
        flush=True,
    )
    started = time.perf_counter()
    results: dict[Strategy, dict[int, list[float]]] = {s: {b: [] for b in args.budgets} for s in STRATEGIES}
    with tempfile.TemporaryDirectory(prefix="bench-active-") as scratch:
        for seed in args.seeds:
            seeded = Annotated(args, pool, heldout, seed, Path(scratch) / f"seed-{seed}")
            for strategy in STRATEGIES:
                for budget, value in seeded.run(strategy).items():
                    results[strategy][budget].append(value)
    print(
        f"\nreward-model accuracy on {len(heldout)} held-out passages, {len(args.seeds)} seeds "
        f"({time.perf_counter() - started:.0f} s)\n"
    )
    print(table(results))
    print("\n" + verdict(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
