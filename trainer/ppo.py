"""Stage 3, PPO (rl_algorithm=ppo): steer the SFT policy toward the target sentiment, with a KL penalty
to the SFT reference, with `trl.experimental.ppo.PPOTrainer`.

    result = ppo.train(policy_model, reference_model, reward_model, reward_dir, tokenizer, prompts,
                       episodes=64, kl_coef=0.05, seed=0, device=device, work_dir=Path("/tmp/ppo"))

The reward model scores prompt + response at its end-of-text token; the value model starts as a
copy of the reward model. Rollouts sample as the evaluation does (`evaluate.TEMPERATURE`,
`evaluate.RESPONSE_TOKENS`). A response cut at that length is not penalised for lacking an
end-of-text token: an expansion is meant to run long, and the penalty would reward short texts.
The policy may be a peft LoRA model (policy_adapter=lora): then only its adapter is trained, and
the reference is still the given SFT model, not the bare base.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

with warnings.catch_warnings():
    # Known and pinned: trl 1.12.0 is the last release with PPO, which lives in trl.experimental there.
    warnings.filterwarnings("ignore", message="You are importing from 'trl.experimental'")
    from trl.experimental.ppo import PPOConfig, PPOTrainer

from models.reward_scoring import load_reward_model
from trainer import evaluate, hf, rl

__all__ = ["AdaptiveKl", "adapted_kl_coef", "to_dataset", "train"]

# Ziegler et al. 2019 (Fine-Tuning Language Models from Human Preferences), section 2.2: the coefficient moves
# by at most K_BETA * ERROR_CLIP (2 %) per update toward the one that keeps the KL at its target.
K_BETA = 0.1
ERROR_CLIP = 0.2


def adapted_kl_coef(kl_coef: float, kl: float, target_kl: float) -> float:
    """The next update's KL coefficient: raised while the policy's KL is above its target, lowered below it."""
    error = min(max(kl / target_kl - 1, -ERROR_CLIP), ERROR_CLIP)
    return kl_coef * (1 + K_BETA * error)


class AdaptiveKl(TrainerCallback):
    """PPO's adaptive KL controller: after each update's log, its KL (per response, summed over its tokens,
    as PPOTrainer logs it) sets the coefficient of the next update's penalty (PPOTrainer reads
    `args.kl_coef` at every rollout)."""

    def __init__(self, target_kl: float) -> None:
        self.target_kl = target_kl

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "objective/kl" in logs:
            args.kl_coef = adapted_kl_coef(args.kl_coef, float(logs["objective/kl"]), self.target_kl)


def to_dataset(prompts: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> Dataset:
    """Tokenized prompts (no padding: the collator pads on the left), cut to their last tokens."""
    return Dataset.from_dict({"input_ids": rl.prompt_ids(prompts, tokenizer)})


def train(
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
    target_kl: float | None = None,
) -> rl.RlResult:
    """`kl_coef` fixed, or with `target_kl` its start, adapted after every update (`AdaptiveKl`)."""
    dataset = to_dataset(prompts, tokenizer)
    batch_size = min(rl.BATCH_SIZE, len(dataset))  # the trainer drops incomplete batches: never ask for more than exist
    value_model, _ = load_reward_model(reward_dir)
    config = PPOConfig(
        **hf.trainer_arguments(work_dir, seed, device, logging_steps=1),
        total_episodes=episodes,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=1,
        local_rollout_forward_batch_size=batch_size,
        num_mini_batches=1,
        num_ppo_epochs=rl.POLICY_EPOCHS,
        learning_rate=rl.LEARNING_RATE,
        response_length=evaluate.RESPONSE_TOKENS,
        temperature=evaluate.TEMPERATURE,
        stop_token="eos",
        kl_coef=kl_coef,
        num_sample_generations=0,
    )
    with warnings.catch_warnings():
        # PPOTrainer reads a name transformers 5 deprecated; nothing to act on until trl stops doing so.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        trainer = PPOTrainer(
            args=config,
            processing_class=tokenizer,
            model=policy,
            ref_model=reference,
            reward_model=reward_model,
            value_model=value_model,
            train_dataset=dataset,
            callbacks=[*callbacks, *([AdaptiveKl(target_kl)] if target_kl is not None else [])],
        )
    hf.quiet(trainer)
    trainer.train()
    return rl.RlResult(
        model=trainer.policy_model,
        updates=trainer.state.global_step,  # PPOTrainer counts one step per batch, whatever its PPO epochs
        metrics={**rl.last_figures(trainer.state.log_history), "kl_coef": float(config.kl_coef)},  # adapted or not
    )
