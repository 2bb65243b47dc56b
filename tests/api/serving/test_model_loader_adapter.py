"""Loading a LoRA version (adapter over a pinned base) beside full-weight ones: both verified, both serve."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from api.serving.generation import SamplingParams, generate
from api.serving.model_loader import load_version
from models.manifest import ChecksumMismatch, Manifest, write_manifest
from trainer import bootstrap, hf

PROMPT = "The cat sat"
CPU = torch.device("cpu")


def adapter_version(root: Path, base_model: str, version: str) -> tuple[Path, str]:
    """A version as the trainer registers it under policy_adapter=lora, with a non-zero adapter."""
    ref = bootstrap.prepare_base(base_model, root / "bases")
    base = AutoModelForCausalLM.from_pretrained(ref.base_path, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(ref.base_path, padding_side="left")
    adapted = get_peft_model(base, hf.lora_config(r=4, alpha=8))
    torch.manual_seed(5)
    with torch.no_grad():
        for name, parameter in adapted.named_parameters():
            if "lora_B" in name:  # peft starts B at zero (a no-op adapter): make it change the output
                parameter.normal_(std=0.5)
    version_dir = root / version
    hf.save(adapted, tokenizer, version_dir / "policy")
    manifest = Manifest(version=version, base_model=base_model, status="promoted", adapter=ref)
    return version_dir, write_manifest(version_dir, manifest)


@pytest.fixture(scope="module")
def lora(tmp_path_factory, v1) -> tuple[Path, str]:
    return adapter_version(tmp_path_factory.mktemp("lora"), str(v1.path / "policy"), "v-lora")


def test_a_lora_version_loads_its_base_and_adapter_and_generates(lora):
    version_dir, sha = lora
    served = load_version(version_dir, sha, device=CPU, expected_version="v-lora")
    assert served.manifest.adapter is not None and not served.model.training
    assert not (version_dir / "policy" / "model.safetensors").exists()
    result = generate(served, SamplingParams(prompt=PROMPT, max_new_tokens=4, seed=0))
    assert result.completion_tokens > 0


def test_the_served_lora_model_is_not_its_bare_base(lora):
    version_dir, sha = lora
    served = load_version(version_dir, sha, device=CPU)
    base = AutoModelForCausalLM.from_pretrained(served.manifest.adapter.base_path, use_safetensors=True)
    ids = served.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert not torch.allclose(served.model(input_ids=ids).logits, base(input_ids=ids).logits)


def test_a_full_weight_version_still_loads_beside_it(lora, v1):
    load_version(*lora, device=CPU)
    assert v1.load().manifest.adapter is None


def test_a_changed_base_is_refused(tmp_path, v1):
    version_dir, sha = adapter_version(tmp_path, str(v1.path / "policy"), "v-lora-tampered")
    served = load_version(version_dir, sha, device=CPU)
    weights = Path(served.manifest.adapter.base_path) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ChecksumMismatch, match="adapter's base"):
        load_version(version_dir, sha, device=CPU)
