"""What one training run is configured with, read once from the settings and frozen.

    config = RunConfig.from_settings(settings)   # refuses a missing GPU, bad targets

Every stage takes the `RunConfig` (or the few fields it needs) instead of the settings: a run cannot see a
setting change half-way, and a benchmark builds its own with `dataclasses.replace`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from ctrlgpt.settings import Settings
from models import devices
from trainer import bootstrap, data, evaluate, group_rl, ppo, rl
from trainer.gate import GateBounds

__all__ = ["RL_STAGES", "ReplayLimits", "RunConfig", "kl_coef_of"]

# One per value of the rl_algorithm setting (a Literal: the settings refuse any other).
RL_STAGES: dict[str, Callable[..., rl.RlResult]] = {"ppo": ppo.train, "rloo": group_rl.rloo, "grpo": group_rl.grpo}


def kl_coef_of(settings: Settings, algorithm: str) -> float:
    """The algorithm's own KL coefficient setting: their penalties differ in kind, so each has its own scale."""
    return {"ppo": settings.ppo_kl_coef, "rloo": settings.rloo_beta, "grpo": settings.grpo_beta}[algorithm]


@dataclass(frozen=True)
class ReplayLimits:
    """How many records a run takes from Kafka: new pages at most, and older pages and labels replayed."""

    max_new_pages: int
    replay_pages: int
    replay_labels: int


@dataclass(frozen=True)
class RunConfig:
    runs_dir: Path  # a run's scratch directory is runs_dir / run_id, removed when it ends
    registry_dir: Path
    anchor: str  # the reward model's target (`target_sentiment`): the shared stages warm-start from its version
    targets: tuple[str, ...]  # one policy per target, the anchor among them
    model_names: Mapping[str, str]  # target -> its model name (`settings.policy_for`)
    base_model: str | None
    lora: bootstrap.Lora | None
    seed: int
    device: torch.device  # every stage's models run on it
    sft_epochs: float  # of a first run
    sft_incremental_epochs: float  # of a run whose policy warm-starts from the anchor's current version
    reward_epochs: float  # of a first run
    reward_incremental_epochs: float  # of a run whose reward model goes on from the current version's
    rl_algorithm: str
    rl_train: Callable[..., rl.RlResult]
    rl_episodes: int
    kl_coef: float  # of rl_algorithm (`kl_coef_of`)
    target_kl: float | None  # PPO's adaptive KL controller's target; None: a fixed coefficient
    gate: GateBounds
    judge_encoder: str | None
    replay: ReplayLimits
    samples_per_prompt: int = evaluate.SAMPLES_PER_PROMPT  # of the gate's evaluation, per held-out prompt
    heldout_prompts: int = data.HELDOUT_PROMPTS  # how many held-out prompts the gate evaluates on
    pretrain_epochs: float = 0.0  # causal-LM epochs on the training pages before SFT, for a fresh bootstrap only
    target_sft_epochs: float = 0.0  # of each target's SFT (`stages.fine_tune_toward`); 0: none
    target_sft_share: float = 0.3  # of the run's expansion pairs each target's SFT learns from

    def sft_epochs_for(self, warm: bool) -> float:
        """SFT epochs of a run whose policy warm-starts from the anchor's current version (`warm`), or of a first
        run: a warm policy has learnt the replayed pages already and needs only to take in the new ones."""
        return self.sft_incremental_epochs if warm else self.sft_epochs

    def reward_epochs_for(self, warm: bool) -> float:
        """Reward-model epochs of a run that goes on from the current reward model (`warm`), or of a first run."""
        return self.reward_incremental_epochs if warm else self.reward_epochs

    @classmethod
    def from_settings(cls, settings: Settings) -> RunConfig:
        """Refuses, before any stage, an adaptive KL target for another algorithm than PPO, device=cuda without
        a GPU and targets without the anchor, in that order (the settings already refuse an unknown
        rl_algorithm)."""
        rl_train = RL_STAGES[settings.rl_algorithm]
        if settings.ppo_target_kl is not None and settings.rl_algorithm != "ppo":
            raise ValueError(f"ppo_target_kl adapts PPO's KL coefficient only, not {settings.rl_algorithm}'s beta")
        device = devices.of(settings)
        targets = tuple(settings.target_list)
        if settings.target_sentiment not in targets:
            raise ValueError(
                f"targets {settings.targets!r} must include target_sentiment {settings.target_sentiment!r}"
            )
        lora = None
        if settings.policy_adapter == "lora":
            lora = bootstrap.Lora(settings.lora_r, settings.lora_alpha, settings.registry_dir / "bases")
        return cls(
            runs_dir=settings.data_dir / "runs",
            registry_dir=settings.registry_dir,
            anchor=settings.target_sentiment,
            targets=targets,
            model_names={target: settings.policy_for(target) for target in targets},
            base_model=settings.base_model,
            lora=lora,
            seed=settings.seed,
            device=device,
            sft_epochs=settings.sft_epochs,
            sft_incremental_epochs=settings.sft_incremental_epochs,
            reward_epochs=settings.reward_epochs,
            reward_incremental_epochs=settings.reward_incremental_epochs,
            rl_algorithm=settings.rl_algorithm,
            rl_train=rl_train,
            rl_episodes=settings.ppo_episodes,
            kl_coef=kl_coef_of(settings, settings.rl_algorithm),
            target_kl=settings.ppo_target_kl,
            gate=GateBounds(
                margin=settings.gate_reward_margin,
                max_kl=settings.gate_max_kl,
                judge_tolerance=settings.gate_judge_tolerance,
                max_perplexity_ratio=settings.gate_max_perplexity_ratio,
            ),
            judge_encoder=settings.judge_encoder,
            replay=ReplayLimits(
                max_new_pages=settings.train_max_new_pages,
                replay_pages=settings.train_replay_pages,
                replay_labels=settings.train_replay_labels,
            ),
            samples_per_prompt=settings.gate_samples_per_prompt,
            heldout_prompts=settings.gate_heldout_prompts,
            pretrain_epochs=settings.bootstrap_pretrain_epochs,
            target_sft_epochs=settings.target_sft_epochs,
            target_sft_share=settings.target_sft_share,
        )
