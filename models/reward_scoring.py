"""A reward model: the one loader, and its score of texts, read at each text's end-of-text token.

Shared by training (trainer/reward.py, PPO, evaluation, the gate) and the API's classify endpoint
(api/serving/sentiment.py), so both load and score a reward model the same way; it pulls in no training
library (transformers and torch only).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from models.layout import REWARD_DIR
from models.manifest import Manifest

__all__ = ["MAX_TOKENS", "encode", "has_reward_model", "load_reward_model", "positions", "score"]

MAX_TOKENS = 256


def load_reward_model(directory: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A one-output sequence classifier saved in `directory` (a version's `reward/`, or a run's) and its tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(directory, padding_side="left")
    model = AutoModelForSequenceClassification.from_pretrained(directory, num_labels=1, use_safetensors=True)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def has_reward_model(manifest: Manifest) -> bool:
    return any(name.startswith(f"{REWARD_DIR}/") for name in manifest.files)


def encode(tokenizer: PreTrainedTokenizerBase, text: str, max_tokens: int = MAX_TOKENS) -> list[int]:
    """The text's tokens, cut to fit, always closed by the end-of-text token (where the score is read)."""
    ids = tokenizer(text, add_special_tokens=False, truncation=True, max_length=max_tokens - 1)["input_ids"]
    return ids + [tokenizer.eos_token_id]


def positions(model: PreTrainedModel) -> int:
    return int(getattr(model.config, "n_positions", None) or model.config.max_position_embeddings)


@torch.inference_mode()
def score(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], batch_size: int = 16
) -> list[float]:
    """Reward of each text, read at its end-of-text token (as in training and in PPO), on the model's device."""
    model.eval()
    max_tokens = min(MAX_TOKENS, positions(model))
    # The classifier reads the last token that is not padding: padding must differ from the
    # end-of-text token the score is read at, else texts are scored one by one, unpadded.
    if tokenizer.pad_token_id in (None, tokenizer.eos_token_id):
        batch_size = 1
    scores: list[float] = []
    for start in range(0, len(texts), batch_size):
        batch = [encode(tokenizer, text, max_tokens) for text in texts[start : start + batch_size]]
        if batch_size > 1:
            padded = tokenizer.pad({"input_ids": batch}, return_tensors="pt")
        else:
            ids = torch.tensor(batch)
            padded = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        # Padding is on the left: positions must count real tokens only, as in training.
        input_ids, attention_mask = padded["input_ids"].to(model.device), padded["attention_mask"].to(model.device)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
        scores.extend(logits.reshape(-1).tolist())
    return scores
