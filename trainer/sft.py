"""Stage 1, SFT: teach the policy to expand a prompt (a headline) into a text, with `trl.SFTTrainer`.

    policy = bootstrap.start_policy(None, corpus, None, seed=0)
    result = sft.train(policy, data.sft_pairs, epochs=8, seed=0, device=device, work_dir=Path("/tmp/sft"))

Loss on the completion only; every completion ends with the tokenizer's end-of-text token.
A LoRA policy (`policy.adapter` set) trains its adapter only; the base stays frozen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PreTrainedModel, TrainerCallback
from trl import SFTConfig, SFTTrainer

from trainer import hf
from trainer.bootstrap import Policy
from trainer.data import ExpansionPair

__all__ = ["SftResult", "to_dataset", "train"]

MAX_TOKENS = 320  # prompt + a cut completion (data.MAX_COMPLETION_CHARS) fit, end-of-text included


@dataclass(frozen=True)
class SftResult:
    model: PreTrainedModel
    loss: float
    steps: int


def to_dataset(pairs: Sequence[ExpansionPair], eos_token: str) -> Dataset:
    """A prompt-completion dataset; the end-of-text token is appended here, explicitly, once."""
    if not pairs:
        raise ValueError("SFT needs at least one expansion pair (no clean pages in the training split)")
    return Dataset.from_list([{"prompt": pair.prompt, "completion": pair.completion + eos_token} for pair in pairs])


def train(
    policy: Policy,
    pairs: Sequence[ExpansionPair],
    *,
    epochs: float,
    seed: int,
    device: torch.device,
    work_dir: Path,
    callbacks: Sequence[TrainerCallback] = (),
) -> SftResult:
    config = SFTConfig(
        **hf.trainer_arguments(work_dir, seed, device),
        num_train_epochs=epochs,
        per_device_train_batch_size=hf.BATCH_SIZE,
        learning_rate=policy.sft_learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.1,
        max_length=min(policy.max_positions, MAX_TOKENS),
        completion_only_loss=True,
        packing=False,
    )
    trainer = hf.quiet(
        SFTTrainer(
            model=policy.model,
            args=config,
            train_dataset=to_dataset(pairs, policy.tokenizer.eos_token),
            processing_class=policy.tokenizer,
            callbacks=list(callbacks),
        )
    )
    outcome = trainer.train()
    return SftResult(model=trainer.model, loss=float(outcome.training_loss), steps=int(outcome.global_step))
