"""What every RL stage shares (`trainer.ppo`, `trainer.group_rl`): its result, the prompts it samples from,
and the one way a stage's logged figures become the run's reward, KL and loss.

    result = stage.train(policy, reference, reward_model, reward_dir, tokenizer, prompts,
                         episodes=128, kl_coef=0.05, seed=0, device=device, work_dir=Path("/tmp/rl"))

An episode is one sampled response to one prompt; an update is one batch of episodes (rollout, scoring
and the policy's optimisation on it), whatever the algorithm, so the figures of each compare.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trainer import evaluate

__all__ = ["BATCH_SIZE", "LEARNING_RATE", "POLICY_EPOCHS", "RlResult", "figures", "last_figures", "prompt_ids"]

BATCH_SIZE = 8  # episodes per update
POLICY_EPOCHS = 4  # optimisation passes over each update's episodes
LEARNING_RATE = 5e-5

# Which figure each trainer logs as the update's loss, mean reward and KL to the reference:
# trl's PPOTrainer logs "loss/policy_avg", "objective/scores" and "objective/kl" (summed over a response's
# tokens); RLOOTrainer and GRPOTrainer "loss", "reward" and "kl" (mean per token); SFT and reward "loss".
LOSS_KEYS = ("loss", "loss/policy_avg")
REWARD_KEYS = ("objective/scores", "reward")
KL_KEYS = ("objective/kl", "kl")


def _first(logs: Mapping[str, float], keys: Sequence[str]) -> float | None:
    return next((float(logs[key]) for key in keys if key in logs), None)


def figures(logs: Mapping[str, float]) -> dict[str, float]:
    """The loss, reward and KL of one trainer log, under those names; the ones it lacks left out."""
    found = {"loss": _first(logs, LOSS_KEYS), "reward": _first(logs, REWARD_KEYS), "kl": _first(logs, KL_KEYS)}
    return {name: value for name, value in found.items() if value is not None}


def last_figures(log_history: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The latest logged value of each of loss, reward and KL over a trainer's logs."""
    latest: dict[str, float] = {}
    for logs in log_history:
        latest.update(figures(logs))
    return latest


@dataclass(frozen=True)
class RlResult:
    model: PreTrainedModel
    updates: int  # batches of episodes
    # The last logged reward, KL and loss (`last_figures`), and the KL coefficient at the end.
    metrics: dict[str, float] = field(default_factory=dict)


def prompt_ids(prompts: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    """Each prompt's last `evaluate.MAX_PROMPT_TOKENS` tokens, as the evaluation cuts them (an empty prompt:
    the end-of-text token alone)."""
    if len(prompts) < 2:
        raise ValueError(f"RL needs at least 2 training prompts, got {len(prompts)}")
    rows = [
        tokenizer(prompt, add_special_tokens=False)["input_ids"][-evaluate.MAX_PROMPT_TOKENS :] for prompt in prompts
    ]
    return [ids or [tokenizer.eos_token_id] for ids in rows]
