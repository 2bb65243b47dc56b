"""Stage 3 without a value model (rl_algorithm=rloo or grpo): steer the SFT policy toward the target
sentiment with trl's `RLOOTrainer` or `GRPOTrainer`, with a KL penalty to the SFT reference.

    result = group_rl.rloo(policy_model, reference_model, reward_model, reward_dir, tokenizer, prompts,
                           episodes=128, kl_coef=0.05, seed=0, device=device, work_dir=Path("/tmp/rloo"))

Both sample a group of `GROUP_SIZE` responses per prompt and take each response's advantage from the
others of its group (RLOO: the leave-one-out mean; GRPO: the group's mean and standard deviation), so
they train no value model. Everything else is PPO's (`trainer.ppo`): the reward model scores prompt +
response at its end-of-text token (`models.reward_scoring`, as the evaluation does), rollouts sample as the
evaluation does, an update is `rl.BATCH_SIZE` episodes optimised `rl.POLICY_EPOCHS` times (trl's
`num_iterations`, clipped as in PPO), at PPO's learning rate; a response cut at the length limit is not
penalised. The KL coefficient is RLOO's and GRPO's `beta`: RLOO subtracts beta times the response's KL from
its reward, GRPO adds beta times the per-token KL to its loss; trl's GRPO default of 0 (no reference at all)
is never used (settings `rloo_beta`, `grpo_beta`). GRPO keeps trl's default loss (`dapo`: token-level,
no length bias).

A LoRA policy (base plus its SFT adapter) trains that adapter; trl keeps a frozen copy of it as the reference,
which is the SFT policy too, and the copy is dropped before the policy is returned.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

from models.reward_scoring import score
from trainer import evaluate, hf, rl

__all__ = ["GROUP_SIZE", "grpo", "reward_function", "rloo", "to_dataset", "updates_of"]

GROUP_SIZE = 4  # responses per prompt in an update: rl.BATCH_SIZE / GROUP_SIZE prompts each
REFERENCE_ADAPTER = "ref"  # trl's name for its frozen copy of a LoRA policy's adapter


def to_dataset(prompts: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> Dataset:
    """Prompt texts cut to their last tokens as PPO's and the evaluation's are (trl tokenizes them again)."""
    return Dataset.from_dict({"prompt": [tokenizer.decode(ids) for ids in rl.prompt_ids(prompts, tokenizer)]})


def reward_function(reward_model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> Callable[..., list[float]]:
    """trl's reward function: the product's reward model on prompt + response, as PPO and the gate score."""

    def reward_model_score(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        return score(
            reward_model,
            tokenizer,
            [prompt + completion for prompt, completion in zip(prompts, completions, strict=True)],
        )

    return reward_model_score


def updates_of(episodes: int) -> int:
    """Updates (batches of episodes) of a run, as PPOTrainer counts them: every episode asked for is run."""
    return max(1, math.ceil(episodes / rl.BATCH_SIZE))


def _arguments(episodes: int, seed: int, device: torch.device, work_dir: Path) -> dict[str, Any]:
    return {
        **hf.trainer_arguments(work_dir, seed, device, logging_steps=1),
        "max_steps": updates_of(episodes) * rl.POLICY_EPOCHS,  # trl counts a step per optimisation pass
        "per_device_train_batch_size": rl.BATCH_SIZE,
        "gradient_accumulation_steps": 1,
        "num_generations": GROUP_SIZE,
        "num_iterations": rl.POLICY_EPOCHS,
        "learning_rate": rl.LEARNING_RATE,
        "max_completion_length": evaluate.RESPONSE_TOKENS,
        "temperature": evaluate.TEMPERATURE,
        "top_k": 0,
        "top_p": 1.0,
    }


def rloo(
    policy: PreTrainedModel,
    reference: PreTrainedModel,
    reward_model: PreTrainedModel,
    reward_dir: Path,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    episodes: int,
    kl_coef: float,
    seed: int,
    device: torch.device,
    work_dir: Path,
    callbacks: Sequence[TrainerCallback] = (),
) -> rl.RlResult:
    config = RLOOConfig(**_arguments(episodes, seed, device, work_dir), beta=kl_coef)
    return _train(RLOOTrainer, config, policy, reference, reward_model, tokenizer, prompts, callbacks)


def grpo(
    policy: PreTrainedModel,
    reference: PreTrainedModel,
    reward_model: PreTrainedModel,
    reward_dir: Path,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    episodes: int,
    kl_coef: float,
    seed: int,
    device: torch.device,
    work_dir: Path,
    callbacks: Sequence[TrainerCallback] = (),
) -> rl.RlResult:
    config = GRPOConfig(**_arguments(episodes, seed, device, work_dir), beta=kl_coef)
    return _train(GRPOTrainer, config, policy, reference, reward_model, tokenizer, prompts, callbacks)


def _train(
    trainer_class: type[RLOOTrainer] | type[GRPOTrainer],
    config: RLOOConfig | GRPOConfig,
    policy: PreTrainedModel,
    reference: PreTrainedModel,
    reward_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    callbacks: Sequence[TrainerCallback],
) -> rl.RlResult:
    with warnings.catch_warnings():
        # trl reads a name transformers 5 deprecated (building the trainer, and before each rollout); nothing to
        # act on until trl stops doing so.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        trainer = trainer_class(
            model=policy,
            reward_funcs=reward_function(reward_model, tokenizer),
            args=config,
            train_dataset=to_dataset(prompts, tokenizer),
            processing_class=tokenizer,
            callbacks=list(callbacks),
        )
        if trainer.ref_model is not None:
            # trl loads its reference again from the policy's directory: the given SFT reference is that model,
            # already loaded, and the one the gate measures KL against.
            trainer.ref_model = trainer.accelerator.prepare_model(reference.eval(), evaluation_mode=True)
        hf.quiet(trainer)
        trainer.train()
    model = trainer.model
    if hf.is_adapter(model) and REFERENCE_ADAPTER in model.peft_config:
        model.delete_adapter(REFERENCE_ADAPTER)  # a version stores the trained adapter only
    return rl.RlResult(
        model=model,
        updates=trainer.state.global_step // rl.POLICY_EPOCHS,
        metrics={**rl.last_figures(trainer.state.log_history), "kl_coef": float(config.beta)},
    )
