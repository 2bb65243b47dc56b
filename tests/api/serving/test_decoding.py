"""Continuous batching's decoder: rows join and leave between steps and each gets the text it gets alone."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from api.serving.decoding import RunningBatch, draw, left_pad_columns, row_warpers, unused_columns, warping_key
from api.serving.generation import Completion, Row, SamplingParams, encode, generate


@dataclass
class Recorder:
    cancelled: bool = False
    deltas: list[str] = field(default_factory=list)
    completion: Completion | None = None
    error: Exception | None = None

    def started(self, prompt_tokens: int) -> None:
        pass

    def delta(self, text: str) -> None:
        self.deltas.append(text)

    def finished(self, completion: Completion) -> None:
        self.completion = completion

    def failed(self, error: Exception) -> None:
        self.error = error


@pytest.fixture(scope="module")
def served(v1):
    return v1.load()


def row(served, params: SamplingParams) -> tuple[Row, Recorder]:
    recorder = Recorder()
    return Row(params, encode(served, params), recorder), recorder


def alone(served, params: SamplingParams) -> Completion:
    batch = RunningBatch(served)
    one, recorder = row(served, params)
    batch.join([one])
    while len(batch):
        batch.step()
    assert recorder.completion is not None
    return recorder.completion


def test_left_padding_and_the_columns_no_row_needs():
    assert left_pad_columns(torch.ones(2, 3), 2, dim=1).tolist() == [[0, 0, 1, 1, 1]] * 2
    assert left_pad_columns(torch.ones(2, 3), 0, dim=1).shape == (2, 3)
    assert unused_columns(torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])) == 1
    assert unused_columns(torch.tensor([[1, 1], [0, 1]])) == 0
    assert unused_columns(torch.zeros(0, 3, dtype=torch.long)) == 3


def test_each_row_gets_its_own_warpers_and_rows_of_the_same_settings_are_warped_together():
    assert len(row_warpers(SamplingParams("a", 4, temperature=0, top_k=5))) == 0  # greedy: the argmax
    assert len(row_warpers(SamplingParams("a", 4, temperature=0.7, top_k=5, top_p=0.9))) == 3
    assert len(row_warpers(SamplingParams("a", 4))) == 1  # the default: top-k 50 at temperature 1
    assert warping_key(SamplingParams("a", 4, temperature=0, top_k=5)) == warping_key(SamplingParams("b", 9, 0))
    assert warping_key(SamplingParams("a", 4, seed=1)) == warping_key(SamplingParams("b", 9, seed=2))
    assert warping_key(SamplingParams("a", 4, top_k=5)) != warping_key(SamplingParams("a", 4))


def test_a_draw_inverts_each_rows_distribution_and_never_picks_an_impossible_token():
    probabilities = torch.tensor([[0.0, 0.5, 0.0, 0.5], [0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 1.0, 0.0]])
    assert draw(probabilities, torch.tensor([0.0, 0.0, 0.0])).tolist() == [1, 0, 2]
    assert draw(probabilities, torch.tensor([0.5, 0.6, 0.99])).tolist() == [3, 2, 2]
    assert draw(probabilities, torch.tensor([0.4999, 0.9999, 0.5])).tolist() == [1, 3, 2]


def test_a_greedy_row_gives_what_model_generate_gives(served):
    params = SamplingParams("The cat", max_new_tokens=12, temperature=0)
    assert alone(served, params).completion == generate(served, params).completion


def test_rows_joining_mid_batch_with_other_settings_get_the_text_they_get_alone(served):
    first = [
        SamplingParams("The cat", max_new_tokens=20, seed=1),
        SamplingParams("A sunny day in the park", max_new_tokens=6, temperature=0),
    ]
    later = [
        SamplingParams("Kafka", max_new_tokens=10, seed=2, temperature=0.7, top_p=0.9),  # shorter than the cache
        SamplingParams(" ".join(["cat"] * 12), max_new_tokens=8, seed=3, repetition_penalty=1.3),  # longer
    ]
    batch = RunningBatch(served)
    rows = [row(served, params) for params in first]
    batch.join([one for one, _ in rows])
    for _ in range(3):
        batch.step()
    assert len(batch) == 2
    joined = [row(served, params) for params in later]
    batch.join([one for one, _ in joined])
    assert len(batch) == 4
    while len(batch):
        batch.step()
    for params, (_, recorder) in zip(first + later, rows + joined):
        assert recorder.error is None
        assert recorder.completion == alone(served, params)
        assert "".join(recorder.deltas) == recorder.completion.completion


def test_a_finished_row_leaves_at_once_and_the_cache_shrinks_to_the_longest_row(served):
    batch = RunningBatch(served)
    (long_prompt, _), (short, short_recorder) = (
        row(served, SamplingParams(" ".join(["cat"] * 12), max_new_tokens=4, temperature=0)),
        row(served, SamplingParams("The cat", max_new_tokens=20, temperature=0)),
    )
    batch.join([long_prompt, short])
    widest = batch.cache_columns
    for _ in range(3):
        batch.step()  # the long prompt's row takes its fourth token and leaves
    assert len(batch) == 1
    assert batch.cache_columns < widest  # only the short row's columns are left
    assert batch.cache_columns == len(short.prompt_ids) + 3
    while len(batch):
        batch.step()
    assert short_recorder.completion.completion_tokens == 20


def test_a_row_whose_client_left_leaves_before_the_next_step(served):
    batch = RunningBatch(served)
    (stays, stays_recorder), (goes, goes_recorder) = (
        row(served, SamplingParams("The cat", max_new_tokens=10, seed=5)),
        row(served, SamplingParams("The cat", max_new_tokens=10, seed=6)),
    )
    batch.join([stays, goes])
    batch.step()
    goes_recorder.cancelled = True
    batch.cancel_left()
    assert len(batch) == 1
    assert goes_recorder.completion.finish_reason == "cancelled"
    while len(batch):
        batch.step()
    assert stays_recorder.completion == alone(served, stays.params)
