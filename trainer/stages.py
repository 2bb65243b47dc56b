"""The stages a run trains once, whatever the targets: data check, tokenizer and policy (and the pretraining pass
of a fresh bootstrap), SFT, reward model.

    policy = stages.start_policy(config, training, anchor_dir)
    if stages.pretrains(config, policy):
        stages.pretrain(config, policy, training, work_dir, callbacks)
    tuned = stages.fine_tune(config, policy, training.sft_pairs, work_dir, callbacks)
    current = stages.reward_start(policy, anchor_dir)
    scorer = stages.train_reward(config, current or tuned.full_dir, policy.tokenizer, training.reward_pairs,
                                 work_dir, callbacks, warm=current is not None)
    scores = stages.completion_scores(scorer.model, policy.tokenizer, training.sft_pairs)
    toward = stages.fine_tune_toward(config, "negative", policy, tuned, training.sft_pairs, scores, work_dir)

A warm start (the policy, the reward model) trains the incremental epochs (`RunConfig.sft_epochs_for`,
`reward_epochs_for`): it has learnt the replayed records already.

The last is per target (when `target_sft_epochs` > 0): each target's SFT, the run's SFT policy fine-tuned on
the training pairs the reward model ranks furthest toward the target (demonstrations of the target, chosen
from the run's own pages), which is that target's RL start and KL reference.

Each is callable alone (`bench/learning.py` does); `trainer.steering` runs the per-target stages after them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from models import layout
from models.policy import load_adapter_policy, load_causal_lm
from models.reward_scoring import score
from trainer import bootstrap, data, hf, reward, sft
from trainer import pretrain as pretrain_stage
from trainer.run_config import RunConfig

__all__ = [
    "Tuned",
    "completion_scores",
    "fine_tune",
    "fine_tune_toward",
    "pretrain",
    "pretrains",
    "require_enough",
    "reward_start",
    "start_policy",
    "train_reward",
    "trainable_copy",
]


def require_enough(training: data.TrainingData) -> None:
    problems = []
    if len(training.train_prompts) < 2:
        problems.append(f"{len(training.train_prompts)} training prompts (need 2: crawl more pages)")
    if not training.heldout_prompts:
        problems.append("no held-out prompts (need 2 pages or more)")
    if not training.reward_pairs:
        problems.append("no reward pairs (label passages both with and without the target sentiment)")
    if problems:
        raise ValueError("not enough data to train: " + "; ".join(problems))


def start_policy(config: RunConfig, training: data.TrainingData, anchor_dir: Path | None) -> bootstrap.Policy:
    """Tokenizer and policy: warm start from the anchor's current version, else the base model or a bootstrap."""
    return bootstrap.start_policy(config.base_model, training.corpus, anchor_dir, config.seed, config.lora)


def pretrains(config: RunConfig, policy: bootstrap.Policy) -> bool:
    """Whether the run pretrains its policy: only a freshly bootstrapped one (random weights), and only with
    `bootstrap_pretrain_epochs` above 0; a base model or a warm start has read far more text already."""
    return config.pretrain_epochs > 0 and policy.base_model == bootstrap.BOOTSTRAP and policy.parent_version is None


def pretrain(
    config: RunConfig,
    policy: bootstrap.Policy,
    training: data.TrainingData,
    work_dir: Path,
    callbacks: Sequence[TrainerCallback] = (),
) -> pretrain_stage.PretrainResult:
    """Causal-LM pretraining of the policy in place on the training pages' text (`trainer.pretrain`)."""
    return pretrain_stage.train(
        policy,
        training.pretraining_texts,
        epochs=config.pretrain_epochs,
        seed=config.seed,
        device=config.device,
        work_dir=work_dir / "pretrain-trainer",
        callbacks=callbacks,
    )


@dataclass(frozen=True)
class Tuned:
    result: sft.SftResult
    full_dir: Path  # full weights (a LoRA adapter folded into its base): the PPO reference, the reward model's start
    adapter_dir: Path | None  # the SFT adapter alone, under LoRA


def fine_tune(
    config: RunConfig,
    policy: bootstrap.Policy,
    pairs: Sequence[data.ExpansionPair],
    work_dir: Path,
    callbacks: Sequence[TrainerCallback] = (),
) -> Tuned:
    return _tune(
        config, policy, pairs, config.sft_epochs_for(warm=policy.parent_version is not None), work_dir, callbacks
    )


def completion_scores(
    reward_model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[data.ExpansionPair]
) -> dict[str, float]:
    """The reward model's score of each distinct completion (toward the anchor), for `fine_tune_toward`."""
    completions = list(dict.fromkeys(pair.completion for pair in pairs))
    return dict(zip(completions, score(reward_model, tokenizer, completions), strict=True))


def fine_tune_toward(
    config: RunConfig,
    target: str,
    policy: bootstrap.Policy,
    tuned: Tuned,
    pairs: Sequence[data.ExpansionPair],
    scores: Mapping[str, float],
    work_dir: Path,
    callbacks: Sequence[TrainerCallback] = (),
) -> Tuned:
    """The target's SFT: a copy of the run's SFT policy (`tuned`) fine-tuned for `target_sft_epochs` on the
    `target_sft_share` of `pairs` whose completions the reward model ranks furthest toward the target
    (`data.target_demonstrations`).

    Why: RL alone moved the bootstrapped policy's outputs toward the reward model, not toward what the
    independent judges read (docs/learning-benchmark.md); imitating the run's own texts of the target does,
    and the RL after it starts from, and is leashed to, a policy that already writes toward its target."""
    demonstrations = data.target_demonstrations(
        pairs, scores, data.reward_sign(target, config.anchor), config.target_sft_share
    )
    start = dataclasses.replace(policy, model=trainable_copy(policy, tuned))
    return _tune(config, start, demonstrations, config.target_sft_epochs, work_dir / f"sft-{target}", callbacks)


def trainable_copy(policy: bootstrap.Policy, tuned: Tuned) -> PreTrainedModel:
    """A fresh trainable copy of an SFT policy: full weights, or the base plus the SFT adapter under LoRA."""
    if policy.adapter is not None and tuned.adapter_dir is not None:
        return load_adapter_policy(policy.adapter, tuned.adapter_dir, trainable=True)[0]
    # Fresh copies from disk: SFTTrainer patches its model's forward for its own loss.
    return load_causal_lm(tuned.full_dir)[0]


def _tune(
    config: RunConfig,
    policy: bootstrap.Policy,
    pairs: Sequence[data.ExpansionPair],
    epochs: float,
    work_dir: Path,
    callbacks: Sequence[TrainerCallback],
) -> Tuned:
    tuned = sft.train(
        policy,
        pairs,
        epochs=epochs,
        seed=config.seed,
        device=config.device,
        work_dir=work_dir / "sft-trainer",
        callbacks=callbacks,
    )
    full_dir = hf.save(hf.merged(tuned.model), policy.tokenizer, work_dir / "sft")
    adapter_dir = hf.save(tuned.model, policy.tokenizer, work_dir / "sft-adapter") if policy.adapter else None
    return Tuned(tuned, full_dir, adapter_dir)


def reward_start(policy: bootstrap.Policy, anchor_dir: Path | None) -> Path | None:
    """The current reward model, when the policy warm-started from the anchor's version (same tokenizer).

    The anchor's versions store it unflipped: they are steered toward the anchor itself."""
    if anchor_dir is None or policy.parent_version is None or not layout.reward_dir(anchor_dir).is_dir():
        return None
    return layout.reward_dir(anchor_dir)


def train_reward(
    config: RunConfig,
    start_dir: Path,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[data.PreferencePair],
    work_dir: Path,
    callbacks: Sequence[TrainerCallback] = (),
    *,
    warm: bool = False,
) -> reward.RewardResult:
    """`warm`: `start_dir` is the current reward model (`reward_start`), not a fresh head on the SFT policy."""
    return reward.train(
        start_dir,
        tokenizer,
        pairs,
        epochs=config.reward_epochs_for(warm),
        seed=config.seed,
        device=config.device,
        work_dir=work_dir / "reward-trainer",
        callbacks=callbacks,
    )
