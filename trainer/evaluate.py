"""Evaluation of a policy on held-out prompts: samples, their reward, KL to a reference, target rate.

Every policy of a gate decision is sampled with the same seed and sampling settings on the same
prompts and scored by the same (newest) reward model. Texts are decoded and re-encoded for the
reward model, so a policy with another tokenizer (an older version) is scored fairly too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from trainer import reward

__all__ = [
    "RESPONSE_TOKENS",
    "TEMPERATURE",
    "Sample",
    "Figures",
    "sample",
    "kl_to_reference",
    "target_threshold",
    "figures_of",
]

RESPONSE_TOKENS = 48
TEMPERATURE = 0.7
SAMPLES_PER_PROMPT = 4
MAX_PROMPT_TOKENS = 64


@dataclass(frozen=True)
class Sample:
    prompt: str
    response: str
    prompt_ids: list[int]
    response_ids: list[int]  # up to and including the first end-of-text token


@dataclass(frozen=True)
class Figures:
    reward_mean: float
    target_rate: float  # share of samples the reward model puts on the target side of its threshold
    kl: float | None  # mean per-token log-prob difference to the reference; None when not measured
    samples: int

    def as_metrics(self, prefix: str) -> dict[str, float]:
        metrics = {f"{prefix}_reward_mean": self.reward_mean, f"{prefix}_target_rate": self.target_rate}
        if self.kl is not None:
            metrics[f"{prefix}_kl"] = self.kl
        return metrics


def generation_config(tokenizer: PreTrainedTokenizerBase) -> GenerationConfig:
    return GenerationConfig(
        max_new_tokens=RESPONSE_TOKENS,
        do_sample=True,
        temperature=TEMPERATURE,
        top_k=0,
        top_p=1.0,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _cut_at_eos(ids: list[int], eos_id: int, pad_id: int) -> list[int]:
    kept = []
    for token in ids:
        if token == pad_id:
            break
        kept.append(token)
        if token == eos_id:
            break
    return kept


@torch.no_grad()
def sample(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    seed: int,
    samples_per_prompt: int = SAMPLES_PER_PROMPT,
) -> list[Sample]:
    """Sampled responses, reproducible for a given seed, model and prompt list."""
    model.eval()
    torch.manual_seed(seed)
    encoded = [
        tokenizer(p, add_special_tokens=False)["input_ids"][-MAX_PROMPT_TOKENS:] or [tokenizer.eos_token_id]
        for p in prompts
    ]
    config = generation_config(tokenizer)
    samples = []
    for prompt, ids in zip(prompts, encoded, strict=True):
        inputs = torch.tensor([ids] * samples_per_prompt)
        output = model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), generation_config=config)
        for row in output[:, len(ids) :].tolist():
            response_ids = _cut_at_eos(row, tokenizer.eos_token_id, tokenizer.pad_token_id)
            text = tokenizer.decode(response_ids, skip_special_tokens=True)
            samples.append(Sample(prompt, text, ids, response_ids))
    return samples


@torch.no_grad()
def _response_logprobs(model: PreTrainedModel, one: Sample) -> torch.Tensor:
    ids = torch.tensor([one.prompt_ids + one.response_ids])
    logits = (
        model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, len(one.prompt_ids) - 1 : -1] / TEMPERATURE
    )
    return torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(one.response_ids).unsqueeze(-1)).squeeze(-1)


def kl_to_reference(policy: PreTrainedModel, reference: PreTrainedModel, samples: Sequence[Sample]) -> float:
    """Mean over sampled tokens of log p_policy - log p_reference at the sampling temperature
    (the k1 estimate PPO penalises)."""
    policy.eval()
    reference.eval()
    differences = [
        _response_logprobs(policy, one) - _response_logprobs(reference, one) for one in samples if one.response_ids
    ]
    return float(torch.cat(differences).mean()) if differences else 0.0


def target_threshold(
    reward_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    target_texts: Sequence[str],
    other_texts: Sequence[str],
) -> float:
    """Midpoint of the mean reward of labelled target and non-target passages: the reward
    model's own boundary between "has the target sentiment" and "has not"."""
    return (
        fmean(reward.score(reward_model, tokenizer, target_texts))
        + fmean(reward.score(reward_model, tokenizer, other_texts))
    ) / 2


def figures_of(
    samples: Sequence[Sample],
    reward_model: PreTrainedModel,
    reward_tokenizer: PreTrainedTokenizerBase,
    threshold: float,
    kl: float | None = None,
) -> Figures:
    """Score prompt + response as PPO does, with the reward model's own tokenizer."""
    if not samples:
        raise ValueError("no samples to evaluate: the held-out prompt set is empty")
    scores = reward.score(reward_model, reward_tokenizer, [one.prompt + one.response for one in samples])
    return Figures(
        reward_mean=fmean(scores),
        target_rate=sum(value > threshold for value in scores) / len(scores),
        kl=kl,
        samples=len(scores),
    )
