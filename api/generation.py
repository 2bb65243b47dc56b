"""Text generation with a served model: tokenize, sample, decode; no HTTP here."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from api.served_model import ServedModel

# Generations run one at a time. torch samples from one process-wide random
# generator: a seeded request is reproducible only if no other generation draws
# from it meanwhile. On CPU one generation already keeps every core busy, so
# this costs little throughput.
_GENERATION_LOCK = threading.Lock()


class PromptTooLong(ValueError):
    """The prompt and the tokens asked for do not fit in the model's context."""


@dataclass(frozen=True)
class SamplingParams:
    prompt: str
    max_new_tokens: int
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    seed: int | None = None


@dataclass(frozen=True)
class Completion:
    version: str
    text: str
    completion: str
    prompt_tokens: int
    completion_tokens: int


def context_length(served: ServedModel) -> int:
    config = served.model.config
    return int(getattr(config, "max_position_embeddings", None) or config.n_positions)


def generate(served: ServedModel, params: SamplingParams) -> Completion:
    """Sample a completion of `params.prompt` (blocking: call it off the event loop)."""
    # The lock also covers the tokenizer: a fast tokenizer is not safe to share between threads.
    with _GENERATION_LOCK:
        return _generate(served, params)


def _generate(served: ServedModel, params: SamplingParams) -> Completion:
    tokenizer, model = served.tokenizer, served.model
    shown = served.manifest.prompt_template.format(prompt=params.prompt)
    encoded = tokenizer(shown, return_tensors="pt")
    prompt_tokens = int(encoded["input_ids"].shape[1])
    context = context_length(served)
    if prompt_tokens + params.max_new_tokens > context:
        raise PromptTooLong(
            f"the prompt is {prompt_tokens} tokens; with max_new_tokens={params.max_new_tokens} that exceeds "
            f"the {context}-token context of model version {served.version}"
        )
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with _seeded(params.seed), torch.inference_mode():
        output = model.generate(
            **encoded,
            max_new_tokens=params.max_new_tokens,
            do_sample=True,
            temperature=params.temperature,
            top_k=params.top_k,
            top_p=params.top_p,
            pad_token_id=pad_token_id,
        )
    new_tokens = output[0, prompt_tokens:]
    completion = tokenizer.decode(new_tokens, skip_special_tokens=True)
    return Completion(
        version=served.version,
        text=params.prompt + completion,
        completion=completion,
        prompt_tokens=prompt_tokens,
        completion_tokens=int(new_tokens.shape[0]),
    )


@contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Sample from `seed` when given, then restore the global generator so unseeded requests stay random."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
