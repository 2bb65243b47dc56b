"""policy_adapter=lora: SFT and PPO train LoRA adapters over a shared base; a version stores the adapter only."""

from __future__ import annotations

import pytest
import torch

from ctrlgpt.settings import Settings
from models import manifest
from models.policy import load_causal_lm, load_policy
from streams.records import TrainingRunProgressed
from trainer import bootstrap, data, hf, pipeline
from trainer.progress import ProgressReporter
from trainer.run_config import RunConfig
from trainer.steering import Offsets


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, make_pages, make_labels):
    """A local base model, as a pretrained one would be given (`base_model=/models/gpt2`)."""
    pages = make_pages(24)
    torch.manual_seed(0)
    tokenizer = bootstrap.train_tokenizer(data.corpus_texts(pages, data.current_labels(make_labels(40))))
    return hf.save(bootstrap.tiny_gpt2(tokenizer), tokenizer, tmp_path_factory.mktemp("base") / "tiny-gpt2")


@pytest.fixture(scope="module")
def settings(tmp_path_factory, base_dir) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        base_model=str(base_dir),
        policy_adapter="lora",
        lora_r=4,
        lora_alpha=8,
        sft_epochs=1,
        sft_incremental_epochs=0.5,
        reward_epochs=1,
        reward_incremental_epochs=0.5,
        ppo_episodes=8,
        target_sft_epochs=1,  # the target's SFT trains a copy of the SFT adapter
        targets="positive",  # the adapters' mechanics; runs of both targets: test_stages
        gate_reward_margin=-1000.0,  # the mechanics, not the model's quality, are under test: let later runs promote
        gate_max_kl=1000.0,
        seed=2,
    )


@pytest.fixture(scope="module")
def events() -> list[TrainingRunProgressed]:
    return []


@pytest.fixture(scope="module")
def runs(settings, make_pages, make_labels, events):
    config = RunConfig.from_settings(settings)
    first = pipeline.train(
        config,
        "lora-1",
        make_pages(24),
        make_labels(40),
        reporter=ProgressReporter("lora-1", events.append),
        offsets=Offsets(labels={"0": 40}, pages={}),
    )
    second = pipeline.train(
        config,
        "lora-2",
        make_pages(12, crawl_id="more"),
        make_labels(20, prefix="more"),
        reporter=ProgressReporter("lora-2", events.append),
        offsets=Offsets(labels={"0": 60}, pages={}),
    )
    return first[0], second[0]


def test_a_lora_version_stores_only_its_adapter_and_pins_its_base(settings, runs):
    first, _ = runs
    checked = manifest.verify(first.path, first.manifest_sha256)
    policy_files = {name.split("/", 1)[1] for name in checked.files if name.startswith("policy/")}
    assert "adapter_model.safetensors" in policy_files and "adapter_config.json" in policy_files
    assert "model.safetensors" not in policy_files
    assert checked.adapter is not None and checked.adapter.base_name == settings.base_model
    assert str(settings.registry_dir / "bases") in checked.adapter.base_path
    assert "model.safetensors" in checked.adapter.base_files


def test_the_next_run_warm_starts_from_the_adapter_over_the_same_base(runs):
    first, second = runs
    checked = manifest.verify(second.path, second.manifest_sha256)
    assert second.status == "promoted" and checked.parent_version == first.version
    assert checked.adapter == manifest.verify(first.path).adapter


def test_a_lora_version_loads_and_generates(runs):
    _, second = runs
    model, tokenizer = load_policy(second.path, manifest.verify(second.path))
    inputs = tokenizer("A visit to the park\n\n", return_tensors="pt")
    torch.manual_seed(0)
    output = model.generate(**inputs, max_new_tokens=8, do_sample=True, pad_token_id=tokenizer.pad_token_id)
    assert output.shape[1] > inputs["input_ids"].shape[1]


def test_the_adapter_changes_the_base_models_output(runs):
    first, _ = runs
    checked = manifest.verify(first.path)
    adapted, tokenizer = load_policy(first.path, checked)
    base, _ = load_causal_lm(checked.adapter.base_path)
    ids = tokenizer("A visit to the park\n\n", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert not torch.allclose(adapted(input_ids=ids).logits, base(input_ids=ids).logits)


def test_a_changed_base_fails_verification(tmp_path, runs):
    first, _ = runs
    checked = manifest.verify(first.path)
    moved = checked.adapter.model_copy(update={"base_files": {**checked.adapter.base_files, "config.json": "0" * 64}})
    with pytest.raises(manifest.ChecksumMismatch, match="adapter's base"):
        manifest.verify_base(moved)


def test_lora_without_a_base_model_is_refused(tmp_path, make_pages, make_labels):
    lora = Settings(data_dir=tmp_path, policy_adapter="lora")
    with pytest.raises(ValueError, match="policy_adapter=lora needs base_model"):
        pipeline.train(
            RunConfig.from_settings(lora), "r", make_pages(10), make_labels(20), reporter=ProgressReporter("r")
        )


def test_the_warm_started_run_trains_the_incremental_epochs(runs, events):
    # The shared stages' announcements (the target's SFT announces "target=... epochs=...", the target_sft_epochs)
    announced = {
        (e.run_id, e.stage): e.message for e in events if e.stage in ("sft", "reward") and e.message[:7] == "epochs="
    }
    assert announced == {
        ("lora-1", "sft"): "epochs=1",
        ("lora-1", "reward"): "epochs=1",
        ("lora-2", "sft"): "epochs=0.5",
        ("lora-2", "reward"): "epochs=0.5",
    }
