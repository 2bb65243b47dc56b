"""The run's configuration: read once from the settings, and what it refuses before any stage."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ctrlgpt.settings import Settings
from models import devices
from trainer import bootstrap, ppo
from trainer.gate import GateBounds
from trainer.run_config import ReplayLimits, RunConfig


def test_the_config_holds_the_settings_a_run_needs(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    settings = Settings(
        data_dir=tmp_path,
        policy_name="p",
        targets="positive,negative",
        base_model="gpt2",
        policy_adapter="lora",
        lora_r=4,
        lora_alpha=8,
        ppo_episodes=16,
        gate_reward_margin=0.2,
        train_replay_labels=7,
        gate_heldout_prompts=80,
        gate_samples_per_prompt=3,
    )
    config = RunConfig.from_settings(settings)
    assert config.runs_dir == tmp_path / "runs" and config.registry_dir == settings.registry_dir
    assert config.anchor == "positive" and config.targets == ("positive", "negative")
    assert config.model_names == {"positive": "p-positive", "negative": "p-negative"}
    assert config.lora == bootstrap.Lora(4, 8, settings.registry_dir / "bases")
    assert config.device == torch.device("cpu") and config.rl_train is ppo.train and config.rl_episodes == 16
    assert config.gate == GateBounds(
        margin=0.2,
        max_kl=settings.gate_max_kl,
        judge_tolerance=settings.gate_judge_tolerance,
        max_perplexity_ratio=settings.gate_max_perplexity_ratio,
    )
    assert config.replay == ReplayLimits(settings.train_max_new_pages, settings.train_replay_pages, 7)
    assert config.heldout_prompts == 80 and config.samples_per_prompt == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 1  # type: ignore[misc]


def test_full_weights_need_no_lora(tmp_path):
    assert RunConfig.from_settings(Settings(data_dir=tmp_path)).lora is None


def test_a_run_asked_to_use_a_missing_gpu_is_refused_before_any_stage(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(devices.NoGpu):
        RunConfig.from_settings(Settings(data_dir=tmp_path, device="cuda"))
    assert not (tmp_path / "runs").exists()


def test_targets_without_the_anchor_are_refused(tmp_path):
    with pytest.raises(ValueError, match="must include target_sentiment 'positive'"):
        RunConfig.from_settings(Settings(data_dir=tmp_path, targets="negative"))


def test_a_warm_start_trains_the_incremental_epochs_and_a_first_run_the_first_runs(tmp_path):
    config = RunConfig.from_settings(
        Settings(
            data_dir=tmp_path, sft_epochs=20, sft_incremental_epochs=3, reward_epochs=4, reward_incremental_epochs=2
        )
    )
    assert (config.sft_epochs_for(warm=False), config.sft_epochs_for(warm=True)) == (20, 3)
    assert (config.reward_epochs_for(warm=False), config.reward_epochs_for(warm=True)) == (4, 2)
