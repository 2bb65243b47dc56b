"""Load a registered version's policy, whichever kind it is: full weights, or a LoRA adapter over a base.

    model, tokenizer = load_policy(version_dir, manifests.verify(version_dir))

The one policy loader, shared by the trainer (warm start, gate, its reference) and the API
(hot-swap), so both read a version the same way; it pulls in no training library (transformers
and peft only). Call `load_policy` with a manifest that `manifest.verify` returned: that checked
the version's files and, for an adapter, every file of its base. Weights are safetensors only.
"""

from __future__ import annotations

from pathlib import Path

from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from models.layout import policy_dir
from models.manifest import AdapterRef, Manifest

__all__ = ["load_adapter_policy", "load_causal_lm", "load_policy"]


def load_policy(
    version_dir: Path, manifest: Manifest, *, trainable: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The version's policy and tokenizer (padding on the left, as generation and PPO need)."""
    policy = policy_dir(version_dir)
    if manifest.adapter is not None:
        return load_adapter_policy(manifest.adapter, policy, trainable=trainable)
    return load_causal_lm(policy)


def load_causal_lm(directory: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A full-weight policy saved in `directory` (a version's `policy/`, or a run's SFT model) and its tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(directory, padding_side="left")
    return AutoModelForCausalLM.from_pretrained(directory, use_safetensors=True), tokenizer


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
