"""A real, tiny training run: bootstrap, SFT, reward model, PPO, gate and registry, on CPU."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ctrlgpt.settings import Settings
from models import manifest
from models.layout import reward_dir
from models.reward_scoring import load_reward_model
from trainer import bootstrap, evaluate, pipeline, reward, steering
from trainer.progress import ProgressReporter
from trainer.run_config import RunConfig
from trainer.steering import Offsets


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        targets="positive,negative",
        sft_epochs=3,
        sft_incremental_epochs=3,
        reward_epochs=2,
        reward_incremental_epochs=2,
        ppo_episodes=16,
        target_sft_epochs=2,
        seed=1,
    )


@pytest.fixture(scope="module")
def run_outcomes(settings, make_pages, make_labels):
    events = []
    sampled = []  # the policies the gates sampled held-out outputs of
    with pytest.MonkeyPatch.context() as patch:
        sample = evaluate.sample
        patch.setattr(
            evaluate, "sample", lambda model, *args, **kwargs: sampled.append(model) or sample(model, *args, **kwargs)
        )
        outcomes = pipeline.train(
            RunConfig.from_settings(settings),
            "tiny-run",
            make_pages(24),
            make_labels(40),
            reporter=ProgressReporter("tiny-run", events.append),
            offsets=Offsets(labels={"0": 40}, pages={"0": 24}),
        )
    return outcomes, events, sampled


@pytest.fixture(scope="module")
def trained(run_outcomes):
    """The first target's outcome (the anchor, positive) and the run's progress events."""
    outcomes, events, _ = run_outcomes
    return outcomes[0], events


def test_run_registers_and_promotes_a_version_per_target_under_its_model_name(settings, run_outcomes):
    outcomes, _, _ = run_outcomes
    assert [outcome.target for outcome in outcomes] == ["positive", "negative"]
    for outcome in outcomes:
        name = settings.policy_for(outcome.target)
        registry = steering.registry_of(RunConfig.from_settings(settings), outcome.target)
        assert registry.root == settings.registry_dir / name and outcome.path.parent == registry.root
        assert outcome.status == "promoted" and registry.current() == outcome.version == registry.versions()[-1]
        checked = manifest.verify(outcome.path, outcome.manifest_sha256)
        assert checked.name == outcome.model_name == name and checked.target_sentiment == outcome.target
        assert checked.status == "promoted" and checked.status_reason == outcome.reason
        assert checked.base_model == bootstrap.BOOTSTRAP and checked.parent_version is None
        assert checked.label_offsets == {"0": 40} and checked.page_offsets == {"0": 24} and checked.adapter is None
        for figure in ("sft_loss", "reward_accuracy", "candidate_reward_mean", "candidate_kl", "reference_reward_mean"):
            assert figure in checked.metrics
        # Both judges, their agreement with the reward model, and the run's control gap, alike in both versions
        for figure in ("candidate_lexicon_target_rate", "baseline_judges_agreement", "reward_hacking"):
            assert figure in checked.metrics
        assert checked.reward_hacking == (
            checked.metrics["reward_hacking"] == 1.0 and "SFT policy" not in checked.status_reason
        )
        gaps = {key: value for key, value in checked.metrics.items() if key.startswith("control_gap_")}
        assert {"control_gap_reward", "control_gap_lexicon", "control_gap_lexicon_low"} <= set(gaps)
        assert gaps == {key: value for key, value in outcomes[0].metrics.items() if key.startswith("control_gap_")}
        assert gaps["control_gap_lexicon_low"] <= gaps["control_gap_lexicon"] <= gaps["control_gap_lexicon_high"]
    assert not (settings.data_dir / "runs" / "tiny-run").exists()


def test_each_target_is_scored_by_the_reward_model_signed_toward_it(run_outcomes):
    outcomes, _, _ = run_outcomes
    texts = ["It was wonderful and everyone loved it.", "It was awful and everyone was angry."]
    scores = {}
    for outcome in outcomes:
        model, tokenizer = load_reward_model(reward_dir(outcome.path))
        scores[outcome.target] = reward.score(model, tokenizer, texts)
    assert scores["negative"] == pytest.approx([-value for value in scores["positive"]], abs=1e-5)
    assert scores["positive"][0] != pytest.approx(scores["positive"][1])


def test_promoted_policy_loads_from_safetensors_and_generates(trained):
    outcome, _ = trained
    tokenizer = AutoTokenizer.from_pretrained(outcome.path / "policy")
    model = AutoModelForCausalLM.from_pretrained(outcome.path / "policy", use_safetensors=True)
    inputs = tokenizer("A visit to the park\n\n", return_tensors="pt")
    torch.manual_seed(0)
    output = model.generate(**inputs, max_new_tokens=12, do_sample=True, pad_token_id=tokenizer.pad_token_id)
    assert output.shape[1] > inputs["input_ids"].shape[1]
    assert tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def test_each_target_is_steered_from_its_own_sft_policy_which_its_gate_samples(run_outcomes):
    outcomes, events, sampled = run_outcomes
    # No current version yet: each target's candidate, and its own SFT policy (fine-tuned toward it) as its reference.
    assert len(outcomes) == 2 and len(sampled) == 4 and len({id(model) for model in sampled}) == 4
    positive, negative = (outcome.metrics for outcome in outcomes)
    assert positive["target_sft_loss"] > 0 and negative["target_sft_loss"] > 0
    assert positive["reference_perplexity"] != negative["reference_perplexity"]
    announced = [e.message for e in events if e.stage == "sft" and e.message.startswith("target=")]
    assert [message for message in announced if "epochs" in message] == [
        "target=positive epochs=2",
        "target=negative epochs=2",
    ]
    # The targets' SFT comes after the reward model that chose its pairs, each before its own RL
    order = [(e.stage, e.message.split(" ")[0]) for e in events if e.message.startswith("target=")]
    assert order.index(("sft", "target=negative")) > order.index(("ppo", "target=positive"))


def test_every_stage_was_announced_in_order(trained):
    _outcome, events = trained
    stages = [event.stage for event in events]
    firsts = [stage for i, stage in enumerate(stages) if stage not in stages[:i]]
    assert firsts == ["data", "tokenizer", "sft", "reward", "ppo", "gate", "register"]
    assert [e.message for e in events if e.stage == "ppo" and e.message.startswith("target=")] == [
        "target=positive algorithm=ppo",
        "target=negative algorithm=ppo",
    ]
    assert any(e.stage == "sft" and e.loss is not None and e.total_steps > 0 for e in events)
    assert any(e.stage == "ppo" and e.reward is not None and e.kl is not None for e in events)
    assert {event.run_id for event in events} == {"tiny-run"}


def test_next_run_warm_starts_from_the_promoted_version(settings, trained):
    outcome, _ = trained
    policy = bootstrap.start_policy(None, ["unused corpus"], outcome.path, seed=0)
    assert policy.parent_version == outcome.version and policy.base_model == bootstrap.BOOTSTRAP
    assert len(policy.tokenizer) == len(AutoTokenizer.from_pretrained(outcome.path / "policy"))


def test_a_different_base_model_is_not_warm_started(trained):
    outcome, _ = trained
    base = str(outcome.path / "policy")  # a local base model, as a hub name would be
    policy = bootstrap.start_policy(base, ["unused corpus"], outcome.path, seed=0)
    assert policy.parent_version is None and policy.base_model == base
    assert policy.tokenizer.pad_token_id != policy.tokenizer.eos_token_id


def test_labels_of_one_sentiment_only_are_not_enough(tmp_path, make_pages, make_labels):
    positives = [event for event in make_labels(10) if event.label.sentiment == "positive"]
    with pytest.raises(ValueError, match="no reward pairs"):
        pipeline.train(
            RunConfig.from_settings(Settings(data_dir=tmp_path)),
            "r",
            make_pages(10),
            positives,
            reporter=ProgressReporter("r"),
        )
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").rglob("manifest.json"))
