"""Evaluation of a policy on held-out prompts: samples, their reward, target rate, KL to a reference,
the independent judge's target rate and mean probability of the target, and the fluency (perplexity
under the SFT reference).

Every policy of a gate decision is sampled with the same seed and sampling settings on the same
prompts and scored by the same (newest) reward model, judge and reference (`Evaluator`). Texts are
decoded and re-encoded for the reward model and the reference, so a policy with another tokenizer
(an older version) is scored fairly too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Protocol

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from trainer import control, reward

__all__ = [
    "RESPONSE_TOKENS",
    "TEMPERATURE",
    "Evaluation",
    "Evaluator",
    "Figures",
    "Outputs",
    "Sample",
    "TextJudge",
    "figures_of",
    "kl_to_reference",
    "on_target_side",
    "perplexity",
    "response_logprobs",
    "rewards_of",
    "sample",
    "summarise",
    "target_threshold",
]

RESPONSE_TOKENS = 48
TEMPERATURE = 0.7
SAMPLES_PER_PROMPT = 4
DECISION_PROBABILITY = 0.5  # every judge's boundary: above it, a text is on the target side
MAX_PROMPT_TOKENS = 64
# Sequences per `generate` call when sampling held-out prompts: 64 prompts x 2 samples in two calls, not 64;
# bounded so that a larger policy's batch stays within memory.
GENERATION_ROWS = 64


@dataclass(frozen=True)
class Sample:
    prompt: str
    response: str
    prompt_ids: list[int]
    response_ids: list[int]  # up to and including the first end-of-text token
    ended: bool  # the policy closed the response with its end-of-text token (rather than running out of length)


@dataclass(frozen=True)
class Figures:
    reward_mean: float
    target_rate: float  # share of samples the reward model puts on the target side of its threshold
    kl: float | None  # mean per-token log-prob difference to the reference; None when not measured
    samples: int
    judge_target_rate: float | None = None  # share the independent judge puts on the target side; None: no judge
    perplexity: float | None = None  # fluency under the SFT reference; None when not measured
    # The judge's mean probability of the target: unlike its rate, it moves with texts that stay on one side of 0.5.
    judge_target_mean: float | None = None
    lexicon_target_rate: float | None = None  # share the lexicon judge (AFINN) puts on the target side
    # Share of samples two scorers put on the same side of their boundaries (`control.agreement`)
    reward_judge_agreement: float | None = None
    reward_lexicon_agreement: float | None = None
    judges_agreement: float | None = None

    def as_metrics(self, prefix: str) -> dict[str, float]:
        metrics = {f"{prefix}_reward_mean": self.reward_mean, f"{prefix}_target_rate": self.target_rate}
        optional = {
            "kl": self.kl,
            "judge_target_rate": self.judge_target_rate,
            "judge_target_mean": self.judge_target_mean,
            "lexicon_target_rate": self.lexicon_target_rate,
            "reward_judge_agreement": self.reward_judge_agreement,
            "reward_lexicon_agreement": self.reward_lexicon_agreement,
            "judges_agreement": self.judges_agreement,
            "perplexity": self.perplexity,
        }
        metrics.update({f"{prefix}_{name}": value for name, value in optional.items() if value is not None})
        return metrics


class TextJudge(Protocol):
    """An independent judge as the evaluation sees it (`trainer.judge.Judge`, `trainer.lexicon.LexiconJudge`)."""

    def target_probabilities(self, texts: Sequence[str]) -> list[float]: ...

    def rate(self, probabilities: Sequence[float]) -> float:
        """Share of the probabilities on the target side of the judge's decision boundary."""
        ...


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
    """Sampled responses, `samples_per_prompt` per prompt in prompt order, reproducible for a given seed,
    model, prompt list and device (the model's). The prompts go to `generate` in batches of
    `GENERATION_ROWS // samples_per_prompt`, left-padded (the attention mask and the position ids skip
    the padding), each prompt sampled `samples_per_prompt` times in the same call (num_return_sequences):
    one call per batch instead of one per prompt."""
    model.eval()
    torch.manual_seed(seed)
    encoded = [
        tokenizer(p, add_special_tokens=False)["input_ids"][-MAX_PROMPT_TOKENS:] or [tokenizer.eos_token_id]
        for p in prompts
    ]
    config = generation_config(tokenizer)
    config.num_return_sequences = samples_per_prompt
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    per_batch = max(1, GENERATION_ROWS // samples_per_prompt)
    samples = []
    for start in range(0, len(prompts), per_batch):
        batch = encoded[start : start + per_batch]
        width = max(len(ids) for ids in batch)
        inputs = torch.tensor([[pad_id] * (width - len(ids)) + ids for ids in batch], device=model.device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=model.device)
        output = model.generate(input_ids=inputs, attention_mask=mask, generation_config=config)
        # Row r answers prompt r // samples_per_prompt of the batch (generate repeats each prompt in place).
        for row, generated in enumerate(output[:, width:].tolist()):
            index = start + row // samples_per_prompt
            response_ids = _cut_at_eos(generated, tokenizer.eos_token_id, tokenizer.pad_token_id)
            text = tokenizer.decode(response_ids, skip_special_tokens=True)
            ended = bool(response_ids) and response_ids[-1] == tokenizer.eos_token_id
            samples.append(Sample(prompts[index], text, encoded[index], response_ids, ended))
    return samples


# Scoring passes (KL, perplexity) take their sequences in batches of about this many logits, right-padded:
# a tiny policy's 128 outputs go through in two or three forward passes instead of 128, and a hub model's
# larger vocabulary gets proportionally fewer rows per pass.
LOGITS_PER_PASS = 1 << 25


@torch.no_grad()
def response_logprobs(
    model: PreTrainedModel, sequences: Sequence[tuple[list[int], list[int]]], *, temperature: float = 1.0
) -> list[torch.Tensor]:
    """Each (prompt ids, response ids) pair's response tokens' log-probabilities under `model` at `temperature`,
    in order. The pairs go through right-padded in batches (`LOGITS_PER_PASS`): positions count from each
    sequence's start and nothing attends to the padding after it, so every figure is the one-at-a-time one."""
    model.eval()
    vocabulary = int(model.config.vocab_size)
    results: list[torch.Tensor] = []
    start = 0
    while start < len(sequences):
        width = max(len(p) + len(r) for p, r in sequences[start : start + 1])
        rows = 1
        # Grow the batch while its logits fit the budget (the widest sequence sets every row's width).
        while start + rows < len(sequences):
            p, r = sequences[start + rows]
            wider = max(width, len(p) + len(r))
            if (rows + 1) * wider * vocabulary > LOGITS_PER_PASS:
                break
            width, rows = wider, rows + 1
        batch = sequences[start : start + rows]
        ids = torch.zeros((rows, width), dtype=torch.long, device=model.device)
        mask = torch.zeros((rows, width), dtype=torch.long, device=model.device)
        for row, (prompt_ids, response_ids) in enumerate(batch):
            sequence = prompt_ids + response_ids
            ids[row, : len(sequence)] = torch.tensor(sequence, device=model.device)
            mask[row, : len(sequence)] = 1
        logits = model(input_ids=ids, attention_mask=mask).logits
        for row, (prompt_ids, response_ids) in enumerate(batch):
            predicted = logits[row, len(prompt_ids) - 1 : len(prompt_ids) + len(response_ids) - 1] / temperature
            targets = torch.tensor(response_ids, device=model.device).unsqueeze(-1)
            results.append(torch.log_softmax(predicted.float(), dim=-1).gather(-1, targets).squeeze(-1))
        start += rows
    return results


def kl_to_reference(policy: PreTrainedModel, reference: PreTrainedModel, samples: Sequence[Sample]) -> float:
    """Mean over sampled tokens of log p_policy - log p_reference at the sampling temperature
    (the k1 estimate PPO penalises)."""
    sequences = [(one.prompt_ids, one.response_ids) for one in samples if one.response_ids]
    if not sequences:
        return 0.0
    by_policy = response_logprobs(policy, sequences, temperature=TEMPERATURE)
    by_reference = response_logprobs(reference, sequences, temperature=TEMPERATURE)
    return float(torch.cat([p - r for p, r in zip(by_policy, by_reference, strict=True)]).mean())


def perplexity(reference: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, samples: Sequence[Sample]) -> float:
    """Fluency: the geometric mean over outputs of each output's perplexity under the reference model
    (temperature 1), given its prompt. Prompt and response are re-encoded with the reference's
    tokenizer, and a response its policy ended counts its end-of-text token, so that an empty answer
    is measured too (as is a response that decodes to no text: as the empty answer it shows)."""
    if not samples:
        raise ValueError("no samples to measure the perplexity of")
    positions = int(getattr(reference.config, "n_positions", None) or reference.config.max_position_embeddings)
    sequences = []
    for one in samples:
        prompt_ids = tokenizer(one.prompt, add_special_tokens=False)["input_ids"][-MAX_PROMPT_TOKENS:]
        prompt_ids = prompt_ids or [tokenizer.eos_token_id]
        response_ids = tokenizer(one.response, add_special_tokens=False)["input_ids"]
        if one.ended or not response_ids:
            # An empty text (ended at once, or of tokens that decode to nothing) is the empty answer it shows.
            response_ids.append(tokenizer.eos_token_id)
        response_ids = response_ids[: positions - len(prompt_ids)]
        if not response_ids:
            raise ValueError(f"a response to {one.prompt!r} has no tokens and no end-of-text: nothing to measure")
        sequences.append((prompt_ids, response_ids))
    mean_nlls = [-float(logprobs.mean()) for logprobs in response_logprobs(reference, sequences)]
    return math.exp(fmean(mean_nlls))


def target_threshold(
    reward_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    target_texts: Sequence[str],
    other_texts: Sequence[str],
) -> float:
    """Midpoint of the mean reward of labelled target and non-target passages: the reward
    model's own boundary between "has the target sentiment" and "has not". Without labelled
    passages on both sides (a run on ratings, preferences or expansions alone) there is no such
    boundary: the reward's zero stands in, and the gate's other checks decide as before."""
    if not target_texts or not other_texts:
        return 0.0
    return (
        fmean(reward.score(reward_model, tokenizer, target_texts))
        + fmean(reward.score(reward_model, tokenizer, other_texts))
    ) / 2


def rewards_of(
    samples: Sequence[Sample], reward_model: PreTrainedModel, reward_tokenizer: PreTrainedTokenizerBase
) -> list[float]:
    """Score prompt + response as PPO does, with the reward model's own tokenizer."""
    if not samples:
        raise ValueError("no samples to evaluate: the held-out prompt set is empty")
    return reward.score(reward_model, reward_tokenizer, [one.prompt + one.response for one in samples])


def figures_of(
    samples: Sequence[Sample],
    reward_model: PreTrainedModel,
    reward_tokenizer: PreTrainedTokenizerBase,
    threshold: float,
    kl: float | None = None,
    *,
    fluency: float | None = None,
) -> Figures:
    return summarise(rewards_of(samples, reward_model, reward_tokenizer), threshold, kl, fluency=fluency)


def summarise(
    rewards: Sequence[float],
    threshold: float,
    kl: float | None = None,
    *,
    judge_target_rate: float | None = None,
    judge_probabilities: Sequence[float] | None = None,
    fluency: float | None = None,
    lexicon_probabilities: Sequence[float] | None = None,
) -> Figures:
    """The figures of one policy's samples from their rewards (and each judge's probabilities, when judged)."""
    by_reward = [value > threshold for value in rewards]
    by_judge = None if judge_probabilities is None else on_target_side(judge_probabilities)
    by_lexicon = None if lexicon_probabilities is None else on_target_side(lexicon_probabilities)
    return Figures(
        reward_mean=fmean(rewards),
        target_rate=sum(by_reward) / len(rewards),
        kl=kl,
        samples=len(rewards),
        judge_target_rate=judge_target_rate,
        perplexity=fluency,
        judge_target_mean=None if judge_probabilities is None else fmean(judge_probabilities),
        lexicon_target_rate=None if by_lexicon is None else sum(by_lexicon) / len(by_lexicon),
        reward_judge_agreement=None if by_judge is None else control.agreement(by_reward, by_judge),
        reward_lexicon_agreement=None if by_lexicon is None else control.agreement(by_reward, by_lexicon),
        judges_agreement=None if by_judge is None or by_lexicon is None else control.agreement(by_judge, by_lexicon),
    )


def on_target_side(probabilities: Sequence[float]) -> list[bool]:
    """Each judged sample on the target side of the judges' decision probability."""
    return [p > DECISION_PROBABILITY for p in probabilities]


@dataclass(frozen=True)
class Outputs:
    """A policy's sampled held-out outputs and their perplexity under the evaluator's reference: the part of an
    evaluation that does not depend on the target (its rewards and judges do), so one policy's outputs can be
    scored toward every target. `prompts` and `seed` are the evaluator's they were sampled for."""

    samples: list[Sample]
    perplexity: float
    prompts: tuple[str, ...]
    seed: int


@dataclass(frozen=True)
class Evaluation:
    figures: Figures
    samples: list[Sample]
    rewards: list[float]  # each sample's reward, in the order of `samples`
    judge_probabilities: list[float] | None = None  # each sample's probability of the target by the judge
    lexicon_probabilities: list[float] | None = None  # ... by the lexicon judge


class Evaluator:
    """Scores policies alike, for the gate and the benchmark: the same held-out prompts and seed, the same
    (newest) reward model and threshold, the same SFT reference for perplexity, the same independent judges
    (judged on the response alone: the prompt is the same for every policy)."""

    def __init__(
        self,
        prompts: Sequence[str],
        *,
        seed: int,
        reward_model: PreTrainedModel,
        reward_tokenizer: PreTrainedTokenizerBase,
        threshold: float,
        reference: PreTrainedModel,
        reference_tokenizer: PreTrainedTokenizerBase,
        judge: TextJudge | None,
        samples_per_prompt: int = SAMPLES_PER_PROMPT,
        lexicon: TextJudge | None = None,
    ) -> None:
        self.prompts = list(prompts)
        self.seed = seed
        self.reward_model = reward_model
        self.reward_tokenizer = reward_tokenizer
        self.threshold = threshold
        self.reference = reference
        self.reference_tokenizer = reference_tokenizer
        self.judge = judge
        self.lexicon = lexicon
        self.samples_per_prompt = samples_per_prompt

    def outputs(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> Outputs:
        """The policy's held-out outputs and their perplexity under the reference."""
        samples = sample(model, tokenizer, self.prompts, seed=self.seed, samples_per_prompt=self.samples_per_prompt)
        fluency = perplexity(self.reference, self.reference_tokenizer, samples)
        return Outputs(samples, fluency, tuple(self.prompts), self.seed)

    def evaluate(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        kl_reference: PreTrainedModel | None = None,
        *,
        outputs: Outputs | None = None,
    ) -> Evaluation:
        """`kl_reference`: measure the KL to it (the candidate's own SFT reference, same tokenizer). `outputs`: the
        policy's outputs already sampled by an evaluator of the same prompts, seed and reference (another target's)."""
        if outputs is None:
            outputs = self.outputs(model, tokenizer)
        elif (outputs.prompts, outputs.seed) != (tuple(self.prompts), self.seed):
            raise ValueError("the outputs were sampled on other prompts or with another seed than this evaluator's")
        samples = outputs.samples
        rewards = rewards_of(samples, self.reward_model, self.reward_tokenizer)
        responses = [one.response for one in samples]
        judged = None if self.judge is None else self.judge.target_probabilities(responses)
        by_lexicon = None if self.lexicon is None else self.lexicon.target_probabilities(responses)
        figures = summarise(
            rewards,
            self.threshold,
            None if kl_reference is None else kl_to_reference(model, kl_reference, samples),
            judge_target_rate=None if judged is None else self.judge.rate(judged),
            judge_probabilities=judged,
            fluency=outputs.perplexity,
            lexicon_probabilities=by_lexicon,
        )
        return Evaluation(figures, samples, rewards, judged, by_lexicon)
