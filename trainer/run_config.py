"""What one training run is configured with, read once from the settings and frozen.

    config = RunConfig.from_settings(settings)   # refuses an unknown RL algorithm, a missing GPU, bad targets

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
from trainer import bootstrap, data, evaluate, ppo
from trainer.gate import GateBounds

__all__ = ["RL_STAGES", "ReplayLimits", "RunConfig", "rl_stage"]

RL_STAGES: dict[str, Callable[..., ppo.PpoResult]] = {"ppo": ppo.train}


def rl_stage(algorithm: str) -> Callable[..., ppo.PpoResult]:
    try:
        return RL_STAGES[algorithm]
    except KeyError:
        raise ValueError(f"unknown rl_algorithm {algorithm!r}; known: {', '.join(sorted(RL_STAGES))}") from None


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
    sft_epochs: float
    reward_epochs: float
    rl_algorithm: str
    rl_train: Callable[..., ppo.PpoResult]
    rl_episodes: int
    kl_coef: float
    gate: GateBounds
    judge_encoder: str | None
    replay: ReplayLimits
    samples_per_prompt: int = evaluate.SAMPLES_PER_PROMPT  # of the gate's evaluation, per held-out prompt
    heldout_prompts: int = data.HELDOUT_PROMPTS  # how many held-out prompts the gate evaluates on

    @classmethod
    def from_settings(cls, settings: Settings) -> RunConfig:
        """Refuses, before any stage, an unknown RL algorithm, device=cuda without a GPU and targets without
        the anchor, in that order."""
        rl_train = rl_stage(settings.rl_algorithm)
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
            reward_epochs=settings.reward_epochs,
            rl_algorithm=settings.rl_algorithm,
            rl_train=rl_train,
            rl_episodes=settings.ppo_episodes,
            kl_coef=settings.ppo_kl_coef,
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
        )
