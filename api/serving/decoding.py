"""Iteration-level (continuous) batching: rows of one served version decode together, one token a step.

A `RunningBatch` holds the rows now decoding on one `ServedModel` and their KV cache (one
transformers `DynamicCache`, a row per request, left-padded to the longest row). Between
two steps rows join and leave:

- joining: the new rows' prompts run through the model together (left-padded), each row
  draws its first token, and their cache is padded on the left to the running rows'
  length (or theirs to the new rows') and appended to the batch;
- leaving: a row that finished (its end of text, its `max_new_tokens`, a stop string) or
  whose client left is dropped from the cache at once, and the columns no row needs any
  more are cut, so the cache is never longer than its longest row.

Each row keeps its own position ids (its own count of real tokens), so padding never
shifts a row's positions, and its own sampling: repetition penalty, temperature, top-k,
top-p and a `torch.Generator` seeded with the request's seed (greedy when temperature is
0). A seeded row thus draws the same tokens whatever else decodes beside it, up to the
rounding of batched kernels; rows with different settings share one batch. The per-row
work is batched where it can be: rows of the same settings are warped as one tensor, and
one lookup draws every sampled row's token from its own uniform draw.

transformers' own continuous batching (`generate_batch`, `ContinuousBatchingManager`) was
not used: its sampling draws from the global torch generator (no per-request seed), greedy
or sampling is one setting of the whole manager, and it knows neither stop strings nor
repetition penalty per request. This loop uses the model's ordinary forward and cache.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import (
    DynamicCache,
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
)

from api.serving.generation import Row, RowProgress, SamplingParams, sampling_warpers
from api.serving.served_model import ServedModel


def row_warpers(params: SamplingParams) -> LogitsProcessorList:
    """What turns a sampled row's logits into its distribution (after its repetition penalty), as `generate` does;
    none for a greedy row."""
    if params.temperature <= 0:
        return LogitsProcessorList()
    return LogitsProcessorList(sampling_warpers(params.temperature, params.top_k, params.top_p))


def warping_key(params: SamplingParams) -> tuple[float, int, float]:
    """Rows with the same key are warped together, as one tensor."""
    if params.temperature == 0:
        return 0.0, 0, 1.0
    return params.temperature, params.top_k, params.top_p


def draw(probabilities: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One token per row of `probabilities` (rows, vocabulary) by inverting its distribution at the row's uniform
    draw in [0, 1): tokens of probability 0 are never drawn."""
    cumulative = probabilities.cumsum(dim=-1)
    chosen = torch.searchsorted(cumulative, uniforms[:, None] * cumulative[:, -1:], right=True)
    return chosen[:, 0].clamp(max=probabilities.shape[-1] - 1)


def left_pad_columns(tensor: torch.Tensor, columns: int, dim: int) -> torch.Tensor:
    """`tensor` with `columns` zeros added before its first column along `dim`."""
    if columns == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = columns
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def unused_columns(mask: torch.Tensor) -> int:
    """How many leading columns of a left-padded attention mask no row attends to (they can be cut)."""
    used = mask.any(dim=0).nonzero()
    return int(used[0]) if len(used) else mask.shape[1]


@dataclass
class _LiveRow:
    progress: RowProgress
    penalty: RepetitionPenaltyLogitsProcessor | None
    warpers: LogitsProcessorList
    warping: tuple[float, int, float]  # its `warping_key`
    generator: torch.Generator | None  # None: greedy
    ids: list[int]  # the prompt's and the generated tokens, for the repetition penalty

    def take(self, token: int) -> bool:
        """Hand the row its token; whether it has finished."""
        self.ids.append(token)
        self.progress.take(token)
        return self.progress.done


def choose(rows: Sequence[_LiveRow], logits: torch.Tensor) -> list[int]:
    """Each row's next token from its logits (rows, vocabulary).

    The repetition penalty applies per row (its own tokens); rows of one `warping_key` are
    warped together; each sampled row draws its uniform from its own generator, and one
    inverse-distribution lookup picks every sampled row's token at once.
    """
    scores = logits.float().clone()
    for index, row in enumerate(rows):
        if row.penalty is not None:
            ids = torch.tensor([row.ids], device=scores.device)
            scores[index : index + 1] = row.penalty(ids, scores[index : index + 1])
    groups: dict[tuple[float, int, float], list[int]] = {}
    for index, row in enumerate(rows):
        if row.warpers:
            groups.setdefault(row.warping, []).append(index)
    for indices in groups.values():
        at = torch.tensor(indices, device=scores.device)
        scores[at] = rows[indices[0]].warpers(None, scores[at])
    tokens = scores.argmax(dim=-1)
    sampled = [index for index, row in enumerate(rows) if row.generator is not None]
    if sampled:
        at = torch.tensor(sampled, device=scores.device)
        uniforms = torch.cat(
            [torch.rand(1, generator=rows[index].generator, device=scores.device) for index in sampled]
        )
        tokens[at] = draw(torch.softmax(scores[at], dim=-1), uniforms)
    return tokens.tolist()


class RunningBatch:
    """The rows decoding on one served version and their KV cache; used by one thread (its batch worker)."""

    def __init__(self, served: ServedModel) -> None:
        self.served = served
        self._rows: list[_LiveRow] = []
        self._cache: DynamicCache | None = None
        self._mask = torch.zeros((0, 0), dtype=torch.long, device=served.model.device)
        self._positions = torch.zeros(0, dtype=torch.long, device=served.model.device)  # each row's next position
        self._next = torch.zeros(0, dtype=torch.long, device=served.model.device)  # each row's last token

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def cache_columns(self) -> int:
        return self._mask.shape[1]

    def join(self, rows: Sequence[Row]) -> None:
        """Run the rows' prompts, give each its first token and keep the unfinished ones decoding.

        Each row's prompt fits the context with its `max_new_tokens` (`encode` checked). If the
        model raises, the new rows are failed with the error, which is raised again.
        """
        if not rows:
            return
        live = [self._live(row) for row in rows]
        try:
            logits, cache, mask = self._prefill(rows)
        except Exception as exc:
            for one in live:
                one.progress.fail(exc)
            raise
        staying = [index for index, (one, token) in enumerate(zip(live, choose(live, logits))) if not one.take(token)]
        if not staying:
            return
        kept = torch.tensor(staying, device=mask.device)
        mask = mask[kept]
        cache.batch_select_indices(kept)
        self._merge([live[index] for index in staying], cache, mask)

    def step(self) -> int:
        """One token for every row; rows that finish leave. Returns the number of rows that took a token.

        If the model raises, every row is failed with the error and the batch is emptied; the error is raised again.
        """
        if not self._rows:
            return 0
        mask = torch.cat([self._mask, self._mask.new_ones((len(self._rows), 1))], dim=1)
        try:
            with torch.inference_mode():
                output = self.served.model(
                    input_ids=self._next[:, None],
                    attention_mask=mask,
                    position_ids=self._positions[:, None],
                    past_key_values=self._cache,
                    use_cache=True,
                )
        except Exception as exc:
            self.fail(exc)
            raise
        self._mask = mask
        self._positions = self._positions + 1
        logits = output.logits[:, -1, :]
        tokens = choose(self._rows, logits)
        finished = {index for index, (one, token) in enumerate(zip(self._rows, tokens)) if one.take(token)}
        self._next = torch.tensor(tokens, dtype=torch.long, device=self._next.device)
        stepped = len(self._rows)
        if finished:
            self._keep([index for index in range(len(self._rows)) if index not in finished])
        return stepped

    def cancel_left(self) -> None:
        """Drop the rows whose client left, before spending a step on them."""
        gone = [index for index, one in enumerate(self._rows) if one.progress.sink.cancelled]
        for index in gone:
            self._rows[index].progress.finish("cancelled")
        if gone:
            self._keep([index for index in range(len(self._rows)) if index not in set(gone)])

    def fail(self, error: Exception) -> None:
        """Fail every row (the model raised) and empty the batch."""
        for one in self._rows:
            one.progress.fail(error)
        self._keep([])

    def _live(self, row: Row) -> _LiveRow:
        params = row.params
        generator = None
        if params.temperature > 0:
            seed = params.seed if params.seed is not None else secrets.randbits(63)
            # On the model's device: a seed gives the same text on a given device (a GPU's differs from the CPU's).
            generator = torch.Generator(self.served.model.device).manual_seed(seed)
        progress = RowProgress(self.served, row)
        progress.sink.started(len(row.prompt_ids))
        penalty = (
            RepetitionPenaltyLogitsProcessor(params.repetition_penalty) if params.repetition_penalty != 1 else None
        )
        return _LiveRow(progress, penalty, row_warpers(params), warping_key(params), generator, list(row.prompt_ids))

    def _prefill(self, rows: Sequence[Row]) -> tuple[torch.Tensor, DynamicCache, torch.Tensor]:
        """The new rows' prompts, left-padded, through the model: their last logits, their cache and mask."""
        model = self.served.model
        device = model.device
        prompts = [torch.tensor(row.prompt_ids, dtype=torch.long) for row in rows]
        input_ids = pad_sequence(prompts, batch_first=True, padding_value=0, padding_side="left").to(device)
        mask = pad_sequence(
            [torch.ones(len(ids), dtype=torch.long) for ids in prompts],
            batch_first=True,
            padding_value=0,
            padding_side="left",
        ).to(device)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        cache = DynamicCache(config=model.config)
        with torch.inference_mode():
            output = model(
                input_ids=input_ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True
            )
        return output.logits[:, -1, :], cache, mask

    def _merge(self, rows: list[_LiveRow], cache: DynamicCache, mask: torch.Tensor) -> None:
        """Append rows whose prompts just ran (their cache and mask) to the running ones, aligned on the right."""
        next_tokens = torch.tensor([one.ids[-1] for one in rows], dtype=torch.long, device=mask.device)
        positions = mask.sum(dim=1)
        if self._cache is None or not self._rows:
            self._rows, self._cache, self._mask, self._positions, self._next = rows, cache, mask, positions, next_tokens
            return
        width = max(self.cache_columns, mask.shape[1])
        ours, theirs = width - self.cache_columns, width - mask.shape[1]
        for mine, new in zip(self._cache.layers, cache.layers):
            mine.keys = torch.cat([left_pad_columns(mine.keys, ours, 2), left_pad_columns(new.keys, theirs, 2)])
            mine.values = torch.cat([left_pad_columns(mine.values, ours, 2), left_pad_columns(new.values, theirs, 2)])
        self._mask = torch.cat([left_pad_columns(self._mask, ours, 1), left_pad_columns(mask, theirs, 1)])
        self._positions = torch.cat([self._positions, positions])
        self._next = torch.cat([self._next, next_tokens])
        self._rows = self._rows + rows

    def _keep(self, indices: list[int]) -> None:
        """Keep only the rows at `indices` (in order), and cut the cache columns none of them needs."""
        self._rows = [self._rows[index] for index in indices]
        if not indices:
            self._cache = None
            self._mask = self._mask[:0, :0]
            self._positions, self._next = self._positions[:0], self._next[:0]
            return
        kept = torch.tensor(indices, device=self._mask.device)
        self._mask, self._positions, self._next = self._mask[kept], self._positions[kept], self._next[kept]
        assert self._cache is not None
        self._cache.batch_select_indices(kept)
        cut = unused_columns(self._mask)
        if cut:
            self._mask = self._mask[:, cut:]
            for layer in self._cache.layers:
                layer.keys, layer.values = layer.keys[:, :, cut:, :], layer.values[:, :, cut:, :]
