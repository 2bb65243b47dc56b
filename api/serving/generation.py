"""Text generation with a served model: encode, run one static batch of requests, decode; no HTTP here.

Requests are decoded step by step by the continuous batcher (api/serving/decoding.py), which
shares this module's encoding and `RowProgress` (a row's text, stop strings, streaming).
What is left here is the static batch: one `model.generate` call over left-padded prompts,
which serves beam search (a beam cannot run as one row among others) and the loader's
warm-up (`generate`). Each request (a row) keeps what is its own:

- its seed: a row samples from its own `torch.Generator` (the last logits processor
  draws the token, `generate` then only takes it), so a seeded request gives the same
  text whatever else shares its batch, up to the rounding of batched kernels;
- its `max_new_tokens`, `stop` strings and cancellation: a stopping criterion follows
  every row, streams its text as it grows and finishes it alone.

What a batch must share (`Decoding`: temperature, top-k, top-p, repetition penalty,
beams) is what `generate` applies to all rows at once. A served version's tokenizer and
model are used by one thread at a time: its model name's batch worker (api/serving/batching.py),
or, before it is served, the loader's warm-up.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from api.serving.served_model import ServedModel

FinishReason = Literal["stop", "length", "cancelled"]


class PromptTooLong(ValueError):
    """The prompt and the tokens asked for do not fit in the model's context."""


@dataclass(frozen=True)
class SamplingParams:
    prompt: str
    max_new_tokens: int
    temperature: float = 1.0  # 0: greedy
    top_k: int = 50  # 0: no limit
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    num_beams: int = 1  # > 1: beam search, which does not sample
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decoding:
    """The settings every row of one batch shares: `generate` applies them to the whole batch."""

    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float
    num_beams: int
    # Beam search finishes rows together: its rows must also agree on their length.
    beam_max_new_tokens: int | None

    @property
    def samples(self) -> bool:
        return self.num_beams == 1 and self.temperature > 0


def decoding_of(params: SamplingParams) -> Decoding:
    """The batch-wide part of `params`; settings that change nothing are normalised so more requests share batches."""
    if params.num_beams > 1:
        return Decoding(0.0, 0, 1.0, params.repetition_penalty, params.num_beams, params.max_new_tokens)
    if params.temperature == 0:
        return Decoding(0.0, 0, 1.0, params.repetition_penalty, 1, None)
    return Decoding(params.temperature, params.top_k, params.top_p, params.repetition_penalty, 1, None)


@dataclass(frozen=True)
class Completion:
    version: str
    text: str
    completion: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason = "length"


class RowSink(Protocol):
    """Where one request's progress goes; called from the generating thread."""

    @property
    def cancelled(self) -> bool: ...

    def started(self, prompt_tokens: int) -> None: ...

    def delta(self, text: str) -> None: ...

    def finished(self, completion: Completion) -> None: ...

    def failed(self, error: Exception) -> None: ...


@dataclass(frozen=True)
class Row:
    """One request in a batch: its parameters, its encoded prompt and where its output goes."""

    params: SamplingParams
    prompt_ids: list[int]
    sink: RowSink


def context_length(served: ServedModel) -> int:
    config = served.model.config
    return int(getattr(config, "max_position_embeddings", None) or config.n_positions)


def encode(served: ServedModel, params: SamplingParams) -> list[int]:
    """The prompt's token ids, as the version was trained to see it; `PromptTooLong` if it cannot fit."""
    shown = served.manifest.prompt_template.format(prompt=params.prompt)
    ids = served.tokenizer(shown)["input_ids"]
    context = context_length(served)
    if len(ids) + params.max_new_tokens > context:
        raise PromptTooLong(
            f"the prompt is {len(ids)} tokens; with max_new_tokens={params.max_new_tokens} that exceeds "
            f"the {context}-token context of model version {served.version}"
        )
    return ids


def run_batch(served: ServedModel, rows: Sequence[Row]) -> None:
    """Generate every row (blocking: call it off the event loop); results go to each row's sink.

    The rows share one `Decoding` and, together, fit the context: the longest prompt plus
    the most new tokens (api.serving.batching.split_to_fit). If `generate` raises, each row not yet
    finished is failed with the error, which is raised again.
    """
    decoding = decoding_of(rows[0].params)
    tokenizer = served.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = served.model.device
    input_ids = pad_sequence(
        [torch.tensor(row.prompt_ids) for row in rows], batch_first=True, padding_value=pad_id, padding_side="left"
    ).to(device)
    attention_mask = pad_sequence(
        [torch.ones(len(row.prompt_ids), dtype=torch.long) for row in rows],
        batch_first=True,
        padding_value=0,
        padding_side="left",
    ).to(device)
    progress = [RowProgress(served, row) for row in rows]
    for one in progress:
        one.sink.started(len(one.row.prompt_ids))
    arguments = dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        max_new_tokens=max(row.params.max_new_tokens for row in rows),
        pad_token_id=pad_id,
        eos_token_id=tokenizer.eos_token_id,
        repetition_penalty=decoding.repetition_penalty,
        do_sample=False,  # a sampled row draws its token in `_SeededSampling`; `generate` takes the only one left
    )
    try:
        with torch.inference_mode():
            if decoding.num_beams > 1:
                output = served.model.generate(**arguments, num_beams=decoding.num_beams)
                for index, one in enumerate(progress):
                    one.take_all(output[index, input_ids.shape[1] :].tolist())
            else:
                served.model.generate(
                    **arguments,
                    logits_processor=LogitsProcessorList(
                        _sampling(decoding, [row.params.seed for row in rows], device)
                    ),
                    stopping_criteria=StoppingCriteriaList([_FollowRows(progress)]),
                )
                for one in progress:
                    one.finish("length")
    except Exception as exc:
        for one in progress:
            one.fail(exc)
        raise


def generate(served: ServedModel, params: SamplingParams) -> Completion:
    """One request alone, in the calling thread (the loader's warm-up); requests go through api.serving.batching."""
    sink = _Collected()
    run_batch(served, [Row(params, encode(served, params), sink)])  # raises what fails the row
    assert sink.completion is not None  # run_batch finishes every row it does not fail
    return sink.completion


def decoded_after(
    tokenizer: PreTrainedTokenizerBase, prompt_ids: list[int], prompt_text: str, tokens: list[int]
) -> str:
    """The text `tokens` add after a prompt (`prompt_text`: its ids decoded) when both are decoded together.

    As transformers' text-generation pipeline cuts a completion: decoded alone, a SentencePiece
    completion loses its leading space ("The hotel by the lake" + "The shuttle"). A tokenizer whose
    clean-up rewrites the seam leaves no prompt to cut: the tokens are decoded alone, then.
    """
    together = tokenizer.decode(prompt_ids + tokens, skip_special_tokens=True)
    if together.startswith(prompt_text):
        return together[len(prompt_text) :]
    return tokenizer.decode(tokens, skip_special_tokens=True)


def sampling_warpers(temperature: float, top_k: int, top_p: float) -> list[LogitsProcessor]:
    """What turns a sampled row's logits into its distribution, as `generate` applies them: temperature, top-k,
    top-p, each only where it changes something."""
    warpers: list[LogitsProcessor] = []
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k > 0:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    return warpers


def _sampling(decoding: Decoding, seeds: Sequence[int | None], device: torch.device) -> list[LogitsProcessor]:
    if not decoding.samples:
        return []
    warpers = sampling_warpers(decoding.temperature, decoding.top_k, decoding.top_p)
    # Generators on the model's device: a seed gives the same text on a given device (a GPU's differs from the CPU's).
    generators = [
        torch.Generator(device).manual_seed(seed if seed is not None else secrets.randbits(63)) for seed in seeds
    ]
    return [*warpers, _SeededSampling(generators)]


class _SeededSampling(LogitsProcessor):
    """Draw each row's next token with the row's own generator; leave only that token possible."""

    def __init__(self, generators: list[torch.Generator]) -> None:
        self._generators = generators

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probabilities = torch.softmax(scores, dim=-1)
        chosen = torch.stack(
            [torch.multinomial(row, 1, generator=generator) for row, generator in zip(probabilities, self._generators)]
        )
        only = torch.full_like(scores, -float("inf"))
        return only.scatter_(1, chosen, 0.0)


class _FollowRows(StoppingCriteria):
    """Each step, hand every unfinished row its new token; a row that finishes stops alone."""

    def __init__(self, progress: list[RowProgress]) -> None:
        self._progress = progress

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        newest = input_ids[:, -1].tolist()
        for one, token in zip(self._progress, newest):
            if not one.done:
                one.take(token)
        return torch.tensor([one.done for one in self._progress], dtype=torch.bool, device=input_ids.device)


@dataclass
class RowProgress:
    """One row's tokens and text so far; streams its text, holding back what may still turn out to be a stop string."""

    served: ServedModel
    row: Row
    tokens: list[int] = field(default_factory=list)
    generated: int = 0  # tokens the model produced for this row, its end-of-text token included
    sent: int = 0  # characters of the completion already streamed
    done: bool = False
    prompt_text: str = field(init=False)  # the prompt as shown to the model (its template), decoded

    def __post_init__(self) -> None:
        self.prompt_text = self.served.tokenizer.decode(self.row.prompt_ids, skip_special_tokens=True)

    @property
    def sink(self) -> RowSink:
        return self.row.sink

    def take(self, token: int) -> None:
        if self.sink.cancelled:
            self.finish("cancelled")
            return
        self.generated += 1
        if token == self.served.tokenizer.eos_token_id:
            self.finish("stop")
            return
        self.tokens.append(token)
        text, stopped = self._text()
        if stopped:
            self.finish("stop")
        elif self.generated >= self.row.params.max_new_tokens:
            self.finish("length")
        else:
            self._send(text, hold_back=max((len(stop) for stop in self.row.params.stop), default=1) - 1)

    def take_all(self, tokens: list[int]) -> None:
        """A whole beam-search output at once: up to its end-of-text token."""
        eos = self.served.tokenizer.eos_token_id
        ended = eos in tokens
        self.tokens = tokens[: tokens.index(eos)] if ended else tokens
        self.generated = len(self.tokens) + int(ended)
        _, stopped = self._text()
        self.finish("stop" if ended or stopped else "length")

    def finish(self, reason: FinishReason) -> None:
        if self.done:
            return
        self.done = True
        text, _ = self._text()
        self._send(text, hold_back=0)
        self.sink.finished(
            Completion(
                version=self.served.version,
                text=self.prompt_text + text,
                completion=text,
                prompt_tokens=len(self.row.prompt_ids),
                completion_tokens=self.generated,
                finish_reason=reason,
            )
        )

    def fail(self, error: Exception) -> None:
        if not self.done:
            self.done = True
            self.sink.failed(error)

    def _text(self) -> tuple[str, bool]:
        """The completion so far, cut before the first stop string; and whether one was found."""
        text = decoded_after(self.served.tokenizer, self.row.prompt_ids, self.prompt_text, self.tokens)
        cuts = [index for stop in self.row.params.stop if (index := text.find(stop)) >= 0]
        return (text[: min(cuts)], True) if cuts else (text, False)

    def _send(self, text: str, hold_back: int) -> None:
        # A token may end inside a multi-byte character: the text then ends in U+FFFD until the next token.
        visible = len(text) if self.done else min(len(text) - hold_back, len(text.rstrip("\ufffd")))
        if visible > self.sent:
            self.sink.delta(text[self.sent : visible])
            self.sent = visible


@dataclass
class _Collected:
    """A sink that keeps the completion or the error, for a caller outside the batch workers."""

    completion: Completion | None = None
    error: Exception | None = None
    cancelled: bool = False

    def started(self, prompt_tokens: int) -> None:
        pass

    def delta(self, text: str) -> None:
        pass

    def finished(self, completion: Completion) -> None:
        self.completion = completion

    def failed(self, error: Exception) -> None:
        self.error = error
