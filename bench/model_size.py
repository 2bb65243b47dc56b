"""Model-size benchmark: how good a bootstrapped (offline) model the corpus allows, at what CPU cost.

    .venv/bin/python bench/model_size.py [--grid default|quick] [--rows 0,2] [--seed 0] [--samples 2] [--device cpu]

No services needed. On the demo site's 30 articles (deploy/demo_site/articles.json, as the cleaner publishes
them: `learning.demo_records`), pages split by URL hash as `data.build` splits them (`data.split_pages`); the
script checks that no held-out paragraph appears in a training page. For each setting of the grid (vocabulary,
layers, width, epochs of a causal-LM pretraining pass over the training pages' text, SFT epochs):

1. a tokenizer trained on the training pages' text only (the pipeline's covers every page: here the held-out
   text must stay unseen), the tiny GPT-2 of that shape, seeded;
2. the pretraining pass (`trainer.pretrain`, when its epochs are above 0), then SFT (`trainer.sft`) on the
   training pages' expansion pairs, as the pipeline runs them;
3. held-out loss on the held-out pages' expansion pairs (prompt -> completion, loss on the completion and its
   end-of-text): BITS PER BYTE of completion text (comparable across vocabularies) and per-token perplexity
   (not comparable across vocabularies: a smaller vocabulary cuts the same text into more, easier tokens);
4. parameters, CPU seconds (this process, all threads) and wall seconds of training (tokenizer, pretraining,
   SFT), and the seconds to sample 128 outputs of up to 48 tokens (64 held-out prompts x 2, as the gate
   samples them: `evaluate.sample`), and `--samples` generations on held-out title prompts.

The first row is the current default (`bootstrap.TinyGPT2()`, `bootstrap_pretrain_epochs`, `sft_epochs`),
measured in the same run. Why no larger corpus: the ingest benchmark's pages (bench/ingest_corpus.py) recombine
the demo's paragraphs, so held-out pages would share paragraphs with training ones.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from learning import demo_records
from machine import describe as describe_machine

from ctrlgpt import logs
from ctrlgpt.settings import Settings
from deploy.demo_site import load_articles
from models import devices
from streams.records import PageCleaned
from trainer import bootstrap, data, evaluate, hf, pretrain, sft

GATE_PROMPTS = 64  # the gate's held-out prompts (gate_heldout_prompts) ...
GATE_SAMPLES_PER_PROMPT = 2  # ... sampled twice each: 128 outputs


@dataclass(frozen=True)
class Setting:
    vocab_size: int
    n_layer: int
    n_embd: int
    pretrain_epochs: float
    sft_epochs: float

    @property
    def shape(self) -> bootstrap.TinyGPT2:
        return bootstrap.TinyGPT2(vocab_size=self.vocab_size, n_layer=self.n_layer, n_embd=self.n_embd)

    def label(self) -> str:
        return (
            f"vocab {self.vocab_size}, {self.n_layer}x{self.n_embd}, "
            f"pretrain {self.pretrain_epochs:g}, sft {self.sft_epochs:g}"
        )


@dataclass(frozen=True)
class Measured:
    setting: Setting
    parameters: int
    vocabulary: int  # tokens the tokenizer learnt (the corpus may not fill the asked size)
    bits_per_byte: float
    token_perplexity: float
    train_cpu_s: float
    train_wall_s: float
    sample_s: float
    samples: list[tuple[str, str]]


def reference() -> Setting:
    settings, shape = Settings(), bootstrap.TinyGPT2()
    return Setting(
        shape.vocab_size, shape.n_layer, shape.n_embd, settings.bootstrap_pretrain_epochs, settings.sft_epochs
    )


def grid(name: str) -> list[Setting]:
    """The reference first, then one knob at a time around it, then combinations of the good ones."""
    ref = reference()
    if name == "quick":
        return [ref, Setting(1024, 2, 128, 1, 1)]
    # About 6 to 7 CPU minutes a row on 2 cores (50 in all; 30 minutes of wall time a row at load 10): vocabulary
    # alone, then a pretraining pass at about the reference's training cost (fewer SFT epochs), at the smaller
    # vocabulary, the reference's and a smaller shape; then a longer pretraining pass, and a larger shape.
    around = [
        Setting(1024, 3, 192, 0, 20),
        Setting(1024, 3, 192, 8, 12),
        Setting(4096, 3, 192, 8, 12),
        Setting(1024, 2, 128, 8, 12),
        Setting(4096, 3, 192, 16, 12),
        Setting(4096, 4, 256, 8, 12),
    ]
    return [ref, *[setting for setting in around if setting != ref]]


def no_shared_paragraphs(train: Sequence[PageCleaned], held: Sequence[PageCleaned]) -> None:
    def paragraphs(pages: Sequence[PageCleaned]) -> set[str]:
        return {" ".join(p.split()) for page in pages for p in page.text.split("\n\n") if p.strip()}

    shared = paragraphs(train) & paragraphs(held)
    if shared:
        raise SystemExit(f"{len(shared)} held-out paragraphs also appear in training pages: no held-out measure")


def page_texts(pages: Sequence[PageCleaned]) -> list[str]:
    return data.corpus_texts(pages, data.LabelSet())


@torch.no_grad()
def heldout_loss(
    model: torch.nn.Module, tokenizer, pairs: Sequence[data.ExpansionPair], max_positions: int
) -> tuple[float, float]:
    """(bits per byte, per-token perplexity) of the completions given their prompts, end-of-text included.

    Prompt and completion are tokenized apart (a lossless code of the completion given the prompt); a sequence
    longer than the model's positions is cut and only the completion bytes actually scored are counted."""
    if not pairs:
        raise ValueError("no held-out pairs to score")
    model.eval()
    nats, tokens, scored_bytes = 0.0, 0, 0
    for pair in pairs:
        prompt = tokenizer(pair.prompt, add_special_tokens=False)["input_ids"]
        completion = tokenizer(pair.completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        kept = min(len(completion), max_positions - len(prompt))
        if kept <= 0:  # the prompt alone fills the model's positions: nothing of the completion to score
            continue
        ids = prompt + completion[:kept]
        logits = model(torch.tensor([ids], device=model.device)).logits[0, :-1].float()
        targets = torch.tensor(ids[1:], device=model.device)
        losses = torch.nn.functional.cross_entropy(logits, targets, reduction="none")[len(prompt) - 1 :]
        nats += float(losses.sum())
        tokens += kept
        scored_bytes += len(tokenizer.decode(completion[:kept], skip_special_tokens=True).encode())
    return nats / math.log(2) / scored_bytes, math.exp(nats / tokens)


def measure(
    setting: Setting,
    train: Sequence[PageCleaned],
    held: Sequence[PageCleaned],
    prompts: list[str],
    *,
    seed: int,
    device: torch.device,
    shown: int,
    work: Path,
) -> Measured:
    started_cpu, started_wall = time.process_time(), time.perf_counter()
    torch.manual_seed(seed)
    tokenizer = bootstrap.train_tokenizer(page_texts(train), setting.shape)
    model = bootstrap.tiny_gpt2(tokenizer, setting.shape).to(device)
    policy = bootstrap.Policy(model, tokenizer, bootstrap.BOOTSTRAP, None, bootstrap.BOOTSTRAP_LEARNING_RATE)
    if setting.pretrain_epochs > 0:
        pretrain.train(
            policy, page_texts(train), epochs=setting.pretrain_epochs, seed=seed, device=device, work_dir=work / "pt"
        )
    tuned = sft.train(
        policy,
        data.expansion_pairs(train),
        epochs=setting.sft_epochs,
        seed=seed,
        device=device,
        work_dir=work / "sft",
    ).model
    train_cpu, train_wall = time.process_time() - started_cpu, time.perf_counter() - started_wall
    bits, perplexity = heldout_loss(tuned, tokenizer, data.expansion_pairs(held), policy.max_positions)
    gate_prompts = (prompts * GATE_PROMPTS)[:GATE_PROMPTS]
    started = time.perf_counter()
    evaluate.sample(tuned, tokenizer, gate_prompts, seed=seed, samples_per_prompt=GATE_SAMPLES_PER_PROMPT)
    sample_s = time.perf_counter() - started
    titles = data.page_prompts(held)[:shown]
    generated = evaluate.sample(tuned, tokenizer, titles, seed=seed, samples_per_prompt=1) if titles else []
    return Measured(
        setting=setting,
        parameters=tuned.num_parameters(),
        vocabulary=len(tokenizer),
        bits_per_byte=bits,
        token_perplexity=perplexity,
        train_cpu_s=train_cpu,
        train_wall_s=train_wall,
        sample_s=sample_s,
        samples=[(sample.prompt.strip(), sample.response.strip()) for sample in generated],
    )


def table(rows: Sequence[Measured]) -> str:
    lines = [
        "| vocab (learnt) | layers x width | pretrain ep. | SFT ep. | params | held-out bits/byte | "
        "token ppl | train CPU s | train wall s | sample 128 s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        s = row.setting
        lines.append(
            f"| {s.vocab_size} ({row.vocabulary}) | {s.n_layer}x{s.n_embd} | {s.pretrain_epochs:g} | "
            f"{s.sft_epochs:g} | {row.parameters / 1e6:.2f} M | {row.bits_per_byte:.3f} | "
            f"{row.token_perplexity:.1f} | {row.train_cpu_s:.0f} | {row.train_wall_s:.0f} | {row.sample_s:.1f} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> list[Measured]:
    hf.quiet_libraries()
    device = devices.resolve(args.device, torch.cuda.is_available())
    pages, _labels = demo_records(load_articles())
    train, held = data.split_pages(data.latest_pages(pages))
    no_shared_paragraphs(train, held)
    prompts = data.heldout_prompts(held, GATE_PROMPTS, trained={pair.prompt for pair in data.expansion_pairs(train)})
    print(f"machine: {describe_machine()}, device {device}, torch threads {torch.get_num_threads()}", flush=True)
    print(
        f"corpus: {len(train)} training pages ({sum(len(t.encode()) for t in page_texts(train))} bytes), "
        f"{len(held)} held-out pages ({len(data.expansion_pairs(held))} held-out pairs), "
        f"{len(prompts)} held-out prompts",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="model-size-") as scratch:
        settings = grid(args.grid)
        chosen = [int(row) for row in args.rows.split(",")] if args.rows else range(len(settings))
        for number, setting in [(row, settings[row]) for row in chosen]:
            row = measure(
                setting,
                train,
                held,
                prompts,
                seed=args.seed,
                device=device,
                shown=args.samples,
                work=Path(scratch) / str(number),
            )
            rows.append(row)
            print(
                f"{setting.label()}{' (reference: the current default)' if number == 0 else ''}: "
                f"{row.parameters:,} parameters, vocabulary {row.vocabulary}, held-out {row.bits_per_byte:.3f} "
                f"bits/byte, token perplexity {row.token_perplexity:.1f}, training {row.train_cpu_s:.0f} CPU s "
                f"({row.train_wall_s:.0f} s wall), sampling 128 outputs {row.sample_s:.1f} s",
                flush=True,
            )
            for prompt, response in row.samples:
                print(f"    {prompt!r} -> {response!r}", flush=True)
    print("\n" + table(rows), flush=True)
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=("default", "quick"), default="default", help="quick: two tiny settings")
    parser.add_argument(
        "--rows", default="", help="comma-separated rows of the grid to run (0: the reference); default: all"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=2, help="generations shown per setting, on held-out titles")
    parser.add_argument("--device", default=Settings().device, choices=("auto", "cpu", "cuda"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    logs.configure("bench-model-size", level="WARNING")
    run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
