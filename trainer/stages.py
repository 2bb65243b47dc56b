"""The stages a run trains once, whatever the targets: data check, tokenizer and policy (and the pretraining pass
of a fresh bootstrap), SFT, reward model.

    policy = stages.start_policy(config, training, anchor_dir)
    if stages.pretrains(config, policy):
        stages.pretrain(config, policy, training, work_dir, callbacks)
    tuned = stages.fine_tune(config, policy, training.sft_pairs, work_dir, callbacks)
    current = stages.reward_start(policy, anchor_dir)
    scorer = stages.train_reward(config, current or tuned.full_dir, policy.tokenizer, training.reward_pairs,
                                 work_dir, callbacks, warm=current is not None)

A warm start (the policy, the reward model) trains the incremental epochs (`RunConfig.sft_epochs_for`,
`reward_epochs_for`): it has learnt the replayed records already.

Each is callable alone (`bench/learning.py` does); `trainer.steering` runs the per-target stages after them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerBase, TrainerCallback

from models import layout
from trainer import bootstrap, data, hf, reward, sft
from trainer import pretrain as pretrain_stage
from trainer.run_config import RunConfig

__all__ = [
    "Tuned",
    "fine_tune",
    "pretrain",
    "pretrains",
    "require_enough",
    "reward_start",
    "start_policy",
    "train_reward",
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
    tuned = sft.train(
        policy,
        pairs,
        epochs=config.sft_epochs_for(warm=policy.parent_version is not None),
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
