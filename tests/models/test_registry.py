from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM, GPT2ForSequenceClassification

from models import layout, manifest
from models.registry import Registry, version_id, version_number
from trainer import bootstrap

TINY = bootstrap.TinyGPT2(vocab_size=300, n_layer=1, n_embd=16, n_head=2, n_positions=32)


@pytest.fixture(scope="module")
def tiny():
    tokenizer = bootstrap.train_tokenizer(["a tiny corpus for a tiny tokenizer"] * 3, TINY)
    policy = bootstrap.tiny_gpt2(tokenizer, TINY)
    scorer = GPT2ForSequenceClassification(policy.config.__class__(**{**policy.config.to_dict(), "num_labels": 1}))
    return policy, scorer, tokenizer


def register(registry: Registry, tiny, run_id: str = "run"):
    policy, scorer, tokenizer = tiny
    with registry.staging() as staging:
        for model, directory in ((policy, layout.policy_dir(staging)), (scorer, layout.reward_dir(staging))):
            model.save_pretrained(directory)
            tokenizer.save_pretrained(directory)
        return registry.register(
            run_id,
            staging,
            base_model=bootstrap.BOOTSTRAP,
            parent_version=None,
            target_sentiment="positive",
            prompt_template="{prompt}\n\n",
            metrics={"candidate_reward_mean": 1.5},
            label_offsets={"0": 7},
        )


def test_version_ids_sort_by_number():
    ids = [version_id(n, "r") for n in (10, 2, 1)]
    assert sorted(ids, key=version_number) == [version_id(1, "r"), version_id(2, "r"), version_id(10, "r")]
    with pytest.raises(ValueError):
        version_number("../elsewhere")


def test_registered_version_verifies_and_loads_from_safetensors(tmp_path, tiny):
    registry = Registry(tmp_path)
    registered = register(registry, tiny)
    checked = manifest.verify(registered.path, registered.manifest_sha256)
    assert checked.status == "candidate" and checked.label_offsets == {"0": 7}
    assert checked.metrics == {"candidate_reward_mean": 1.5}
    assert "policy/model.safetensors" in checked.files and "reward/model.safetensors" in checked.files
    assert not [name for name in checked.files if name.endswith((".bin", ".pt", ".pkl"))]
    AutoModelForCausalLM.from_pretrained(registered.path / "policy", use_safetensors=True)
    assert registry.versions() == [registered.version] and registry.current() is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging")]
    assert checked.prompt_template == "{prompt}\n\n"


def test_a_staging_directory_given_up_leaves_nothing_behind(tmp_path):
    registry = Registry(tmp_path)
    with pytest.raises(RuntimeError, match="save failed"):
        with registry.staging() as staging:
            (staging / "policy").mkdir()
            raise RuntimeError("save failed")
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]
    assert registry.versions() == []


def test_promote_points_current_at_the_version(tmp_path, tiny):
    registry = Registry(tmp_path)
    first, second = register(registry, tiny, "a"), register(registry, tiny, "b")
    assert registry.versions() == [first.version, second.version]
    assert version_number(second.version) == version_number(first.version) + 1
    sha = registry.promote(second.version, "better")
    assert registry.current() == second.version and registry.current_dir() == second.path
    promoted = manifest.verify(second.path, sha)
    assert promoted.status == "promoted" and promoted.status_reason == "better"


def test_reject_records_status_and_reason(tmp_path, tiny):
    registry = Registry(tmp_path)
    registered = register(registry, tiny)
    sha = registry.reject(registered.version, "no gain")
    assert manifest.verify(registered.path, sha).status_reason == "no gain"
    assert registry.current() is None


def test_tampered_file_fails_verification_and_promotion(tmp_path, tiny):
    registry = Registry(tmp_path)
    registered = register(registry, tiny)
    weights = registered.path / "policy" / "model.safetensors"
    tampered = bytearray(weights.read_bytes())
    tampered[-1] ^= 0xFF
    weights.write_bytes(bytes(tampered))
    with pytest.raises(manifest.ChecksumMismatch):
        manifest.verify(registered.path)
    with pytest.raises(manifest.ChecksumMismatch):
        registry.promote(registered.version, "should not happen")
    assert registry.current() is None


def test_pointer_to_a_missing_version_is_an_error(tmp_path):
    (tmp_path / "CURRENT").write_text(version_id(3, "gone") + "\n")
    with pytest.raises(FileNotFoundError):
        Registry(tmp_path).current()
