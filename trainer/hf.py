"""Shared pieces of the Hugging Face stages: trainer arguments, saving (safetensors only), LoRA.

Loading a saved policy or reward model is `models.policy` and `models.reward_scoring`: one loader each,
shared with the API."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer
from transformers.trainer_callback import PrinterCallback, ProgressCallback

__all__ = [
    "is_adapter",
    "lora_config",
    "merged",
    "quiet",
    "quiet_libraries",
    "save",
    "trainer_arguments",
]

BATCH_SIZE = 8


def trainer_arguments(work_dir: Path, seed: int, device: torch.device, logging_steps: int = 5) -> dict[str, Any]:
    """Arguments every stage shares: the resolved device (`models.devices`), full precision (bf16 was not
    measured to keep the learning figures), no checkpoints, no external reporting."""
    return {
        "output_dir": str(work_dir),
        # Not on the CPU, accelerate takes the first CUDA GPU: the one `devices.resolve` saw.
        "use_cpu": device.type == "cpu",
        "bf16": False,
        "fp16": False,
        "activation_checkpointing": False,
        "save_strategy": "no",
        "report_to": [],
        "logging_steps": logging_steps,
        "disable_tqdm": True,
        "seed": seed,
        "data_seed": seed,
        "dataloader_num_workers": 0,
    }


def quiet(trainer: Trainer) -> Trainer:
    """Drop the stdout printer and progress bars: progress goes to the structured log and Kafka instead."""
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer


def quiet_libraries() -> None:
    """Keep the service's log structured: no progress bars, no per-step library chatter."""
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    # accelerate warns once per PPO update that a metrics tensor "had no length": expected for scalars.
    logging.getLogger("accelerate").setLevel(logging.ERROR)


def save(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, directory: Path) -> Path:
    """Weights (model.safetensors), config and tokenizer, loadable with `from_pretrained` alone;
    for a LoRA model, its adapter only (adapter_model.safetensors, adapter_config.json)."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def lora_config(r: int, alpha: int) -> Any:
    """LoRA on the model's attention projections (peft knows them per architecture: c_attn for GPT-2)."""
    from peft import LoraConfig  # only policy_adapter=lora needs peft

    return LoraConfig(task_type="CAUSAL_LM", r=r, lora_alpha=alpha, lora_dropout=0.0)


def is_adapter(model: PreTrainedModel) -> bool:
    return hasattr(model, "peft_config")


def merged(model: PreTrainedModel) -> PreTrainedModel:
    """A full-weight copy of a LoRA model (base plus adapter folded in); any other model as it is."""
    if not is_adapter(model):
        return model
    return copy.deepcopy(model).merge_and_unload()
