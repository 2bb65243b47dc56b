"""Stage 0 of a bootstrapped policy: causal-LM pretraining on the pages' own text, before SFT.

    policy = bootstrap.start_policy(None, corpus, None, seed=0)
    pretrain.train(policy, data.pretraining_texts(train_pages), epochs=4, seed=0, device=device, work_dir=...)

A bootstrapped model starts from random weights; SFT alone teaches it language only through the
completions of its expansion pairs, with the loss on the completion. This pass reads every text of
the training pages (title, summary and body, each document closed by end-of-text) as one stream cut
into blocks, the loss on every token, so that SFT starts from a model that already writes the corpus's
words. It only makes sense for a fresh bootstrap: a warm start or a base model has done it already.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from transformers import (
    DataCollatorForLanguageModeling,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from trainer import hf
from trainer.bootstrap import Policy

__all__ = ["BLOCK_TOKENS", "PretrainResult", "blocks", "train"]

BLOCK_TOKENS = 256  # within every bootstrapped shape's positions; short blocks keep a CPU step cheap


@dataclass(frozen=True)
class PretrainResult:
    loss: float
    steps: int
    blocks: int


def blocks(
    texts: Sequence[str], tokenizer: PreTrainedTokenizerBase, block_tokens: int = BLOCK_TOKENS
) -> list[list[int]]:
    """The texts as one token stream, each closed by end-of-text, cut into blocks of `block_tokens`
    (the last one shorter): every token is trained on once per epoch."""
    stream: list[int] = []
    for text in texts:
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        stream.append(tokenizer.eos_token_id)
    return [stream[start : start + block_tokens] for start in range(0, len(stream), block_tokens)]


def train(
    policy: Policy,
    texts: Sequence[str],
    *,
    epochs: float,
    seed: int,
    device: torch.device,
    work_dir: Path,
    callbacks: Sequence[TrainerCallback] = (),
) -> PretrainResult:
    """Causal-LM training of `policy.model` in place on `texts`, at the bootstrap's SFT learning rate."""
    cut = blocks(texts, policy.tokenizer, min(BLOCK_TOKENS, policy.max_positions))
    if not cut:
        raise ValueError("pretraining needs some text (no clean pages in the training split)")
    arguments = TrainingArguments(
        **hf.trainer_arguments(work_dir, seed, device),
        num_train_epochs=epochs,
        per_device_train_batch_size=hf.BATCH_SIZE,
        learning_rate=policy.sft_learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.1,
    )
    trainer = hf.quiet(
        Trainer(
            model=policy.model,
            args=arguments,
            train_dataset=Dataset.from_list([{"input_ids": block} for block in cut]),
            # Right-padded batches with the pad token's labels at -100: padding never counts in the loss.
            data_collator=DataCollatorForLanguageModeling(policy.tokenizer, mlm=False),
            callbacks=list(callbacks),
        )
    )
    outcome = trainer.train()
    return PretrainResult(loss=float(outcome.training_loss), steps=int(outcome.global_step), blocks=len(cut))
