"""Where a run's policy starts: the current promoted version, a base model, or a fresh tiny GPT-2.

    warm start   the current promoted version, when it grew from the same base (`settings.base_model`)
    base model   `settings.base_model`: a local path or a hub name, loaded from safetensors only
    bootstrap    no base model (offline): a byte-level BPE tokenizer trained on the crawled corpus
                 and a small GPT-2 built from its config, with random weights

Every path yields the same thing, a `Policy`: a causal LM and its tokenizer with distinct
end-of-text and padding tokens, padding on the left (PPO and batched generation need it).
"""

from __future__ import annotations

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

from trainer import manifest

__all__ = [
    "EOS_TOKEN",
    "PAD_TOKEN",
    "BOOTSTRAP",
    "TinyGPT2",
    "Policy",
    "train_tokenizer",
    "tiny_gpt2",
    "load_pretrained",
    "start_policy",
]

log = structlog.get_logger()

EOS_TOKEN = "<|endoftext|>"  # GPT-2's own end-of-text token: a bootstrapped and a hub GPT-2 agree
PAD_TOKEN = "<|pad|>"
BOOTSTRAP = "bootstrap"  # the manifest's base_model of a policy grown from a bootstrapped one

# Learning rates of the SFT stage: a random tiny model needs big steps, a pretrained one small.
BOOTSTRAP_LEARNING_RATE = 1e-3
PRETRAINED_LEARNING_RATE = 5e-5


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


def start_policy(base_model: str | None, corpus: list[str], current_version_dir: Path | None, seed: int) -> Policy:
    """The policy a run fine-tunes: warm from the current version when it shares the base, else fresh."""
    base = base_model or BOOTSTRAP
    learning_rate = BOOTSTRAP_LEARNING_RATE if base == BOOTSTRAP else PRETRAINED_LEARNING_RATE
    if current_version_dir is not None:
        current = manifest.verify(current_version_dir)
        if current.base_model == base:
            log.info("policy.warm_start", version=current.version, base_model=base)
            model, tokenizer = load_pretrained(str(current_version_dir / "policy"))
            return Policy(model, tokenizer, base, current.version, learning_rate)
        log.info("policy.base_changed", current=current.version, current_base=current.base_model, base_model=base)
    if base_model:
        log.info("policy.from_base", base_model=base_model)
        model, tokenizer = load_pretrained(base_model)
        return Policy(model, tokenizer, base, None, learning_rate)
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(corpus)
    model = tiny_gpt2(tokenizer)
    log.info("policy.bootstrapped", vocab=len(tokenizer), parameters=model.num_parameters(), shape=TinyGPT2().__dict__)
    return Policy(model, tokenizer, base, None, learning_rate)
