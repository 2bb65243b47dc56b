"""Where a run's policy starts: the current promoted version, a base model, or a fresh tiny GPT-2.

    warm start   the current promoted version, when it grew from the same base (`settings.base_model`)
                 and is of the same kind (full weights, or a LoRA adapter)
    base model   `settings.base_model`: a local path or a hub name, loaded from safetensors only
    bootstrap    no base model (offline): a byte-level BPE tokenizer trained on the crawled corpus
                 and a small GPT-2 built from its config, with random weights

With LoRA (`Lora` given), the base model is prepared once (a distinct pad token added) and kept
under `<registry_dir>/bases/`, pinned by the sha256 of its files; the policy is that base with
a trainable adapter, the current version's adapter on a warm start. LoRA needs a base model:
an adapter over the randomly initialised bootstrap model would have nothing to adapt.

Every path yields the same thing, a `Policy`: a causal LM and its tokenizer with distinct
end-of-text and padding tokens, padding on the left (PPO and batched generation need it).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import structlog
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from models import manifest
from models.layout import policy_dir
from models.manifest import AdapterRef
from models.policy import load_policy
from trainer import hf

__all__ = [
    "BOOTSTRAP",
    "EOS_TOKEN",
    "PAD_TOKEN",
    "Lora",
    "Policy",
    "TinyGPT2",
    "load_pretrained",
    "prepare_base",
    "start_policy",
    "tiny_gpt2",
    "train_tokenizer",
]

log = structlog.get_logger()

EOS_TOKEN = "<|endoftext|>"  # GPT-2's own end-of-text token: a bootstrapped and a hub GPT-2 agree
PAD_TOKEN = "<|pad|>"
BOOTSTRAP = "bootstrap"  # the manifest's base_model of a policy grown from a bootstrapped one

# Learning rates of the SFT stage: a random tiny model needs big steps, a pretrained one small.
BOOTSTRAP_LEARNING_RATE = 1e-3
PRETRAINED_LEARNING_RATE = 5e-5
LORA_LEARNING_RATE = 2e-4  # adapters start at zero and are few: they take larger steps than full weights
BASE_FILES = "files.json"


@dataclass(frozen=True)
class TinyGPT2:
    """Shape of a bootstrapped model: small enough that a whole run fits in minutes on 2 CPU cores."""

    vocab_size: int = 4096
    n_layer: int = 3
    n_embd: int = 192
    n_head: int = 4
    n_positions: int = 512  # room for API requests of up to 256 new tokens; training uses at most 320
    min_frequency: int = 2


@dataclass(frozen=True)
class Policy:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    base_model: str  # what the lineage started from: a path, a hub name, or BOOTSTRAP
    parent_version: str | None
    sft_learning_rate: float
    adapter: AdapterRef | None = None  # set when `model` is a LoRA adapter over this base

    @property
    def max_positions(self) -> int:
        return int(getattr(self.model.config, "n_positions", None) or self.model.config.max_position_embeddings)


def train_tokenizer(texts: list[str], shape: TinyGPT2 = TinyGPT2()) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2's scheme) trained on `texts`: any input encodes, nothing is unknown."""
    if not texts:
        raise ValueError("cannot train a tokenizer on an empty corpus")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=shape.vocab_size,
        min_frequency=shape.min_frequency,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="left",
        model_max_length=shape.n_positions,
    )


def tiny_gpt2(tokenizer: PreTrainedTokenizerBase, shape: TinyGPT2 = TinyGPT2()) -> GPT2LMHeadModel:
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=shape.n_positions,
        n_embd=shape.n_embd,
        n_layer=shape.n_layer,
        n_head=shape.n_head,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    _align_generation_config(model, tokenizer)
    return model


def load_pretrained(path_or_name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer from safetensors, given a distinct pad token when it lacks one."""
    tokenizer = AutoTokenizer.from_pretrained(path_or_name, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path_or_name, use_safetensors=True)
    # PPO cuts responses at the first end-of-text and treats pad as "no token": the two must differ.
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    _align_generation_config(model, tokenizer)
    return model, tokenizer


def _align_generation_config(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id


@dataclass(frozen=True)
class Lora:
    """policy_adapter=lora: adapter shape, and where prepared base models are kept."""

    r: int
    alpha: int
    bases_dir: Path


def prepare_base(base_model: str, bases_dir: Path) -> AdapterRef:
    """The base prepared for adapters (as `load_pretrained` makes it), saved once and pinned by sha256.

    Later runs reuse it after checking its files: every adapter of a lineage sits on the same weights.
    """
    directory = bases_dir / hashlib.sha256(base_model.encode()).hexdigest()[:16]
    listing = directory / BASE_FILES
    if listing.is_file():
        files = json.loads(listing.read_text())
        ref = AdapterRef(base_name=base_model, base_path=str(directory / "model"), base_files=files)
        manifest.verify_base(ref)
        return ref
    staging = bases_dir / f".staging-{uuid.uuid4().hex}"
    try:
        model, tokenizer = load_pretrained(base_model)
        hf.save(model, tokenizer, staging / "model")
        (staging / BASE_FILES).write_text(json.dumps(manifest.checksum_files(staging / "model"), indent=2))
        try:
            staging.rename(directory)
        except OSError:
            if not listing.is_file():  # not another run preparing the same base at the same time
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("policy.base_prepared", base_model=base_model, path=str(directory))
    return prepare_base(base_model, bases_dir)


def _warm_version(current_version_dir: Path | None, base: str, adapter: bool) -> manifest.Manifest | None:
    """The current version's manifest when a run may warm-start from it, else None (logged why)."""
    if current_version_dir is None:
        return None
    current = manifest.verify(current_version_dir)
    if current.base_model == base and (current.adapter is not None) == adapter:
        log.info("policy.warm_start", version=current.version, base_model=base, adapter=adapter)
        return current
    log.info(
        "policy.base_changed",
        current=current.version,
        current_base=current.base_model,
        current_adapter=current.adapter is not None,
        base_model=base,
        adapter=adapter,
    )
    return None


def start_policy(
    base_model: str | None,
    corpus: list[str],
    current_version_dir: Path | None,
    seed: int,
    lora: Lora | None = None,
) -> Policy:
    """The policy a run fine-tunes: warm from the current version when it shares the base, else fresh."""
    if lora is not None:
        return _start_adapter_policy(base_model, current_version_dir, lora)
    base = base_model or BOOTSTRAP
    learning_rate = BOOTSTRAP_LEARNING_RATE if base == BOOTSTRAP else PRETRAINED_LEARNING_RATE
    current = _warm_version(current_version_dir, base, adapter=False)
    if current is not None:
        model, tokenizer = load_pretrained(str(policy_dir(current_version_dir)))
        return Policy(model, tokenizer, base, current.version, learning_rate)
    if base_model:
        log.info("policy.from_base", base_model=base_model)
        model, tokenizer = load_pretrained(base_model)
        return Policy(model, tokenizer, base, None, learning_rate)
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(corpus)
    model = tiny_gpt2(tokenizer)
    log.info("policy.bootstrapped", vocab=len(tokenizer), parameters=model.num_parameters(), shape=TinyGPT2().__dict__)
    return Policy(model, tokenizer, base, None, learning_rate)


def _start_adapter_policy(base_model: str | None, current_version_dir: Path | None, lora: Lora) -> Policy:
    if not base_model:
        raise ValueError(
            "policy_adapter=lora needs base_model (a pretrained causal LM): "
            "an adapter over the randomly initialised bootstrap model has nothing to adapt"
        )
    current = _warm_version(current_version_dir, base_model, adapter=True)
    if current is not None and current.adapter is not None:
        model, tokenizer = load_policy(current_version_dir, current, trainable=True)
        return Policy(model, tokenizer, base_model, current.version, LORA_LEARNING_RATE, current.adapter)
    from peft import get_peft_model  # only policy_adapter=lora needs peft

    ref = prepare_base(base_model, lora.bases_dir)
    base = AutoModelForCausalLM.from_pretrained(ref.base_path, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(ref.base_path, padding_side="left")
    model = get_peft_model(base, hf.lora_config(lora.r, lora.alpha))
    trainable, total = model.get_nb_trainable_parameters()
    log.info("policy.lora", base_model=base_model, r=lora.r, alpha=lora.alpha, trainable=trainable, total=total)
    return Policy(model, tokenizer, base_model, None, LORA_LEARNING_RATE, ref)
