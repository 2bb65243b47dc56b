"""Stage 2, reward model: a sequence classifier (one output) that scores how much a text has the
target sentiment, trained with `trl.RewardTrainer` on Bradley-Terry pairs (chosen over rejected).

    result = reward.train(start_dir, tokenizer, data.reward_pairs, epochs=8, seed=0, device=device,
                          work_dir=Path("/tmp/rm"))
    reward.score(result.model, tokenizer, ["what a lovely day"])
    reward.toward(result.model, -1)     # the same judge, scoring toward the opposite sentiment

The first run starts from the SFT policy's transformer (a fresh scoring head); later runs go on
training the current reward model (`start_dir` holds a sequence classifier: its head is kept). It
shares the policy's tokenizer, so PPO can score the policy's tokens directly. A text is scored
at its end-of-text token. The model scores "toward the anchor sentiment" (data.reward_sign).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from trl import RewardConfig, RewardTrainer

from models.reward_scoring import (
    MAX_TOKENS,
    encode,
    load_reward_model,
    positions,
    score,
)
from trainer import hf
from trainer.data import PreferencePair

__all__ = ["RewardResult", "encode", "score", "to_dataset", "toward", "train"]

LEARNING_RATE = 3e-4


@dataclass(frozen=True)
class RewardResult:
    model: PreTrainedModel
    loss: float
    accuracy: float  # share of the training pairs ranked right after training
    steps: int


def to_dataset(pairs: Sequence[PreferencePair], tokenizer: PreTrainedTokenizerBase, max_tokens: int) -> Dataset:
    """Pre-tokenized pairs: long passages are cut here rather than dropped by the trainer's length filter."""
    if not pairs:
        raise ValueError(
            "the reward model needs at least one pair: label passages both with and without the target sentiment"
        )
    return Dataset.from_list(
        [
            {
                "chosen_ids": encode(tokenizer, pair.chosen, max_tokens),
                "rejected_ids": encode(tokenizer, pair.rejected, max_tokens),
            }
            for pair in pairs
        ]
    )


def toward(model: PreTrainedModel, sign: int) -> PreTrainedModel:
    """The reward model scoring toward a target of the given sign: itself for +1, for -1 a copy
    whose linear scoring head is negated, so that every score is exactly minus the original."""
    if sign > 0:
        return model
    head = getattr(model, "score", None)
    if not isinstance(head, torch.nn.Linear):
        raise TypeError(f"{type(model).__name__} has no linear `score` head to negate")
    flipped = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in flipped.score.parameters():
            parameter.neg_()
    return flipped


def train(
    start_dir: Path,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[PreferencePair],
    *,
    epochs: float,
    seed: int,
    device: torch.device,
    work_dir: Path,
    callbacks: Sequence[TrainerCallback] = (),
) -> RewardResult:
    torch.manual_seed(seed)  # the scoring head is initialised at random
    model, _ = load_reward_model(start_dir)
    max_tokens = min(MAX_TOKENS, positions(model))
    config = RewardConfig(
        **hf.trainer_arguments(work_dir, seed, device),
        num_train_epochs=epochs,
        per_device_train_batch_size=hf.BATCH_SIZE,
        learning_rate=LEARNING_RATE,
        lr_scheduler_type="cosine",
        warmup_steps=0.1,
        max_length=max_tokens,
        center_rewards_coefficient=0.01,
    )
    trainer = hf.quiet(
        RewardTrainer(
            model=model,
            args=config,
            train_dataset=to_dataset(pairs, tokenizer, max_tokens),
            processing_class=tokenizer,
            callbacks=list(callbacks),
        )
    )
    outcome = trainer.train()
    chosen = score(trainer.model, tokenizer, [pair.chosen for pair in pairs])
    rejected = score(trainer.model, tokenizer, [pair.rejected for pair in pairs])
    accuracy = sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(pairs)
    return RewardResult(
        model=trainer.model, loss=float(outcome.training_loss), accuracy=accuracy, steps=int(outcome.global_step)
    )
