"""Load a registered version's policy, whichever kind it is: full weights, or a LoRA adapter over a base.

    model, tokenizer = load_policy(version_dir, manifests.verify(version_dir))

Shared by the trainer (warm start, gate) and the API (hot-swap), so both read a version the same
way; like `manifest`, it pulls in no training library (transformers and peft only). Call it
with a manifest that `manifest.verify` returned: that checked the version's files and, for an
adapter, every file of its base. Weights are safetensors only.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from trainer.manifest import AdapterRef, Manifest

__all__ = ["POLICY_DIR", "load_policy", "load_adapter_policy"]

POLICY_DIR = "policy"


def load_policy(
    version_dir: Path, manifest: Manifest, *, trainable: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The version's policy and tokenizer (padding on the left, as generation and PPO need)."""
    policy = version_dir / POLICY_DIR
    if manifest.adapter is not None:
        return load_adapter_policy(manifest.adapter, policy, trainable=trainable)
    tokenizer = AutoTokenizer.from_pretrained(policy, padding_side="left")
    return AutoModelForCausalLM.from_pretrained(policy, use_safetensors=True), tokenizer


def load_adapter_policy(
    adapter: AdapterRef, adapter_dir: Path, *, trainable: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A fresh copy of the base with the adapter in `adapter_dir` on top: a trainable peft model, or,
    frozen, the adapter folded into the base (a plain model: generation runs at full-weight speed)."""
    from peft import PeftModel  # only LoRA versions need peft

    base = AutoModelForCausalLM.from_pretrained(adapter.base_path, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir, padding_side="left")
    model = PeftModel.from_pretrained(base, adapter_dir, is_trainable=trainable)
    return (model if trainable else model.merge_and_unload()), tokenizer
