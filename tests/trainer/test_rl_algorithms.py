"""rl_algorithm = ppo, rloo or grpo: each runs from the setting on a tiny model, moves the policy, reports its
progress under the same fields, and gets its KL coefficient to trl."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import TrainerCallback

from ctrlgpt.settings import Settings
from models.policy import load_causal_lm
from models.reward_scoring import load_reward_model
from trainer import bootstrap, data, group_rl, hf, ppo, rl, steering
from trainer.ppo import AdaptiveKl, adapted_kl_coef
from trainer.progress import ProgressCallback, ProgressReporter
from trainer.run_config import RunConfig

SHAPE = bootstrap.TinyGPT2(vocab_size=512, n_layer=1, n_embd=32, n_head=2, n_positions=160)
EPISODES = 8  # one update of each algorithm


@pytest.fixture(scope="module")
def models(tmp_path_factory, make_pages, make_labels):
    """A tiny causal LM (the SFT policy and reference) and a reward model grown from it, saved as a run saves them."""
    pages = make_pages(12)
    torch.manual_seed(0)
    tokenizer = bootstrap.train_tokenizer(data.corpus_texts(pages, data.current_labels(make_labels(10))), SHAPE)
    root = tmp_path_factory.mktemp("rl-models")
    sft_dir = hf.save(bootstrap.tiny_gpt2(tokenizer, SHAPE), tokenizer, root / "sft")
    reward_model, _ = load_reward_model(sft_dir)  # a fresh score head on the policy's body, seeded above
    reward_dir = hf.save(reward_model, tokenizer, root / "reward")
    prompts = [f"{page.title}{data.PROMPT_END}" for page in pages]
    return sft_dir, reward_dir, tokenizer, prompts


class ArgumentsSeen(TrainerCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        self.args = args


def run(algorithm: str, models, tmp_path, **settings: object):
    sft_dir, reward_dir, tokenizer, prompts = models
    config = RunConfig.from_settings(
        Settings(data_dir=tmp_path, rl_algorithm=algorithm, ppo_episodes=EPISODES, seed=3, device="cpu", **settings)
    )
    events, seen = [], ArgumentsSeen()
    start = load_causal_lm(sft_dir)[0]
    before = {name: value.clone() for name, value in start.state_dict().items()}
    result = steering.reinforce(
        config,
        start,
        load_causal_lm(sft_dir)[0],
        load_reward_model(reward_dir)[0],
        reward_dir,
        tokenizer,
        prompts,
        tmp_path / "work",
        [ProgressCallback(ProgressReporter(f"rl-{algorithm}", events.append), "ppo"), seen],
    )
    return result, before, events, seen.args


@pytest.mark.parametrize(
    ("algorithm", "stage", "coefficient", "value"),
    [("ppo", ppo.train, "kl_coef", 0.07), ("rloo", group_rl.rloo, "beta", 0.06), ("grpo", group_rl.grpo, "beta", 0.03)],
)
def test_each_algorithm_runs_from_the_setting_moves_the_policy_and_reports_alike(
    models, tmp_path, algorithm, stage, coefficient, value
):
    setting = {"ppo": "ppo_kl_coef", "rloo": "rloo_beta", "grpo": "grpo_beta"}[algorithm]
    assert RunConfig.from_settings(Settings(data_dir=tmp_path, rl_algorithm=algorithm)).rl_train is stage

    result, before, events, args = run(algorithm, models, tmp_path, **{setting: value})

    assert getattr(args, coefficient) == value == result.metrics["kl_coef"]  # the KL leash reaches trl, fixed
    assert result.updates == 1
    after = result.model.state_dict()
    assert any(not torch.equal(before[name], after[name].cpu()) for name in before)
    stepped = [event for event in events if event.reward is not None]
    assert stepped and all(event.stage == "ppo" and event.kl is not None for event in stepped)
    assert stepped[-1].step >= 1 and stepped[-1].total_steps >= stepped[-1].step
    assert {"reward", "kl", "loss"} <= set(result.metrics)


def test_grpo_is_leashed_by_default(tmp_path):
    settings = Settings(data_dir=tmp_path, rl_algorithm="grpo")
    assert RunConfig.from_settings(settings).kl_coef == settings.grpo_beta > 0


def test_an_unknown_algorithm_is_refused_by_the_settings(tmp_path):
    with pytest.raises(ValueError, match="'ppo', 'rloo' or 'grpo'"):
        Settings(data_dir=tmp_path, rl_algorithm="dpo")


def test_trainer_logs_of_every_algorithm_map_to_the_same_figures():
    ppo_logs = {"loss/policy_avg": 0.5, "objective/scores": 1.5, "objective/kl": 2.0, "objective/entropy": 3.0}
    group_logs = {"loss": 0.25, "reward": 0.75, "kl": 0.125, "entropy": 3.0, "reward_std": 0.1}
    assert rl.figures(ppo_logs) == {"loss": 0.5, "reward": 1.5, "kl": 2.0}
    assert rl.figures(group_logs) == {"loss": 0.25, "reward": 0.75, "kl": 0.125}
    assert rl.figures({"train_runtime": 1.0}) == {}
    assert rl.last_figures([group_logs, {"loss": 0.5}, {"train_runtime": 1.0}]) == {
        "loss": 0.5,
        "reward": 0.75,
        "kl": 0.125,
    }


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # peft reads it
@pytest.mark.parametrize("algorithm", ["rloo", "grpo"])
def test_a_lora_policy_trains_its_adapter_against_its_own_frozen_copy(models, tmp_path, algorithm):
    from peft import get_peft_model

    sft_dir, reward_dir, tokenizer, prompts = models
    config = RunConfig.from_settings(
        Settings(data_dir=tmp_path, rl_algorithm=algorithm, ppo_episodes=EPISODES, seed=3, device="cpu")
    )
    start = get_peft_model(load_causal_lm(sft_dir)[0], hf.lora_config(4, 8))
    before = {name: value.clone() for name, value in start.named_parameters() if "lora_" in name}
    result = steering.reinforce(
        config,
        start,
        load_causal_lm(sft_dir)[0],
        load_reward_model(reward_dir)[0],
        reward_dir,
        tokenizer,
        prompts,
        tmp_path / "work",
    )
    assert list(result.model.peft_config) == ["default"]  # trl's reference copy is not stored with the version
    after = dict(result.model.named_parameters())
    assert any(not torch.equal(value, after[name].detach().cpu()) for name, value in before.items())
    saved = hf.save(result.model, tokenizer, tmp_path / "saved")
    assert (saved / "adapter_model.safetensors").is_file() and not (saved / group_rl.REFERENCE_ADAPTER).exists()


def test_the_adaptive_kl_coefficient_follows_the_kl_toward_its_target_by_at_most_2_percent():
    assert adapted_kl_coef(0.1, kl=2.0, target_kl=2.0) == pytest.approx(0.1)
    assert adapted_kl_coef(0.1, kl=2.2, target_kl=2.0) == pytest.approx(0.1 * 1.01)
    assert adapted_kl_coef(0.1, kl=1.8, target_kl=2.0) == pytest.approx(0.1 * 0.99)
    assert adapted_kl_coef(0.1, kl=50.0, target_kl=2.0) == pytest.approx(0.1 * 1.02)
    assert adapted_kl_coef(0.1, kl=0.0, target_kl=2.0) == pytest.approx(0.1 * 0.98)


def test_the_controller_sets_the_next_updates_coefficient_from_ppos_logged_kl():
    args = SimpleNamespace(kl_coef=0.05)  # PPOTrainer reads args.kl_coef at every rollout
    controller = AdaptiveKl(target_kl=1.0)
    controller.on_log(args, None, None, logs={"loss": 1.0})  # SFT-like logs carry no KL: nothing moves
    assert args.kl_coef == 0.05
    controller.on_log(args, None, None, logs={"objective/kl": 3.0})
    assert args.kl_coef == pytest.approx(0.05 * 1.02)


def test_a_ppo_run_with_a_target_kl_adapts_its_coefficient(models, tmp_path):
    result, _, _, args = run("ppo", models, tmp_path, ppo_kl_coef=0.05, ppo_target_kl=1e6)
    assert result.metrics["kl_coef"] == args.kl_coef == pytest.approx(0.05 * 0.98)  # KL far below: down 2 %


def test_an_adaptive_kl_target_is_refused_for_rloo_and_grpo(tmp_path):
    for algorithm in ("rloo", "grpo"):
        with pytest.raises(ValueError, match="ppo_target_kl adapts PPO's KL coefficient only"):
            RunConfig.from_settings(Settings(data_dir=tmp_path, rl_algorithm=algorithm, ppo_target_kl=1.0))
