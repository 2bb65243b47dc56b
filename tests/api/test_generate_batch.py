"""One batch of requests through `api.serving.generation.run_batch`: each row gets only its own output."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from api.serving.generation import (
    Completion,
    PromptTooLong,
    Row,
    SamplingParams,
    decoded_after,
    decoding_of,
    encode,
    generate,
    run_batch,
)

PROMPTS = ["The cat", "A sunny day in the park makes", "Kafka"]


@dataclass
class Recorded:
    """A sink that records what it is told; cancels itself after `cancel_after` deltas."""

    cancel_after: int | None = None
    prompt_tokens: int | None = None
    deltas: list[str] = field(default_factory=list)
    completion: Completion | None = None
    error: Exception | None = None

    @property
    def cancelled(self) -> bool:
        return self.cancel_after is not None and len(self.deltas) >= self.cancel_after

    def started(self, prompt_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens

    def delta(self, text: str) -> None:
        self.deltas.append(text)

    def finished(self, completion: Completion) -> None:
        self.completion = completion

    def failed(self, error: Exception) -> None:
        self.error = error


@pytest.fixture(scope="module")
def served(v1):
    return v1.load()


def _run(served, params_list: list[SamplingParams], sinks: list[Recorded] | None = None) -> list[Recorded]:
    sinks = sinks or [Recorded() for _ in params_list]
    run_batch(served, [Row(params, encode(served, params), sink) for params, sink in zip(params_list, sinks)])
    return sinks


def test_greedy_rows_in_one_batch_equal_each_row_alone(served):
    params = [SamplingParams(prompt, max_new_tokens=8, temperature=0) for prompt in PROMPTS]
    together = _run(served, params)
    alone = [_run(served, [one])[0] for one in params]
    assert [sink.completion.completion for sink in together] == [sink.completion.completion for sink in alone]
    assert [sink.prompt_tokens for sink in together] == [len(encode(served, one)) for one in params]


def test_a_seeded_row_gives_the_same_text_whatever_shares_its_batch(served):
    seeded = SamplingParams("The cat", max_new_tokens=10, temperature=1.5, top_k=0, seed=11)
    alone = _run(served, [seeded])[0].completion
    others = [SamplingParams(prompt, max_new_tokens=10, temperature=1.5, top_k=0) for prompt in PROMPTS]
    batched = _run(served, [*others, seeded])[-1].completion
    assert batched.completion == alone.completion
    other_seed = _run(served, [SamplingParams("The cat", max_new_tokens=10, temperature=1.5, top_k=0, seed=12)])[0]
    assert other_seed.completion.completion != alone.completion


def test_each_row_stops_at_its_own_max_new_tokens_and_streams_its_text(served):
    params = [SamplingParams(PROMPTS[0], max_new_tokens=n, temperature=0) for n in (2, 9)]
    short, long = _run(served, params)
    assert (short.completion.completion_tokens, long.completion.completion_tokens) == (2, 9)
    assert short.completion.finish_reason == long.completion.finish_reason == "length"
    for sink in (short, long):
        assert "".join(sink.deltas) == sink.completion.completion
        assert sink.completion.text == PROMPTS[0] + "\n\n" + sink.completion.completion  # the template's prompt
        assert sink.completion.version == "v1"


def test_a_stop_string_ends_the_row_before_it(served):
    free = generate(served, SamplingParams(PROMPTS[1], max_new_tokens=12, temperature=0)).completion
    assert len(free) > 4, free
    stop = free[2:4]
    sink = _run(served, [SamplingParams(PROMPTS[1], max_new_tokens=12, temperature=0, stop=(stop,))])[0]
    assert sink.completion.completion == free[: free.index(stop)]
    assert sink.completion.finish_reason == "stop"
    assert "".join(sink.deltas) == sink.completion.completion


def test_a_cancelled_row_stops_while_the_others_go_on(served):
    params = [SamplingParams(PROMPTS[0], max_new_tokens=12, temperature=0) for _ in range(2)]
    cancelled, going_on = _run(served, params, [Recorded(cancel_after=1), Recorded()])
    assert cancelled.completion.finish_reason == "cancelled"
    assert cancelled.completion.completion_tokens < going_on.completion.completion_tokens


def test_beam_search_rows_share_a_batch_and_are_deterministic(served):
    params = [SamplingParams(prompt, max_new_tokens=6, num_beams=3) for prompt in PROMPTS[:2]]
    first, second = _run(served, params), _run(served, params)
    assert [sink.completion.completion for sink in first] == [sink.completion.completion for sink in second]
    assert all(0 < sink.completion.completion_tokens <= 6 for sink in first)


def test_decoding_keeps_only_what_changes_the_batch():
    greedy = [SamplingParams("a", 4, temperature=0, top_k=k, seed=s) for k, s in ((5, 1), (50, None))]
    assert decoding_of(greedy[0]) == decoding_of(greedy[1])
    sampled = [SamplingParams("a", n, temperature=0.7, seed=s) for n, s in ((4, 1), (9, 2))]
    assert decoding_of(sampled[0]) == decoding_of(sampled[1])
    assert decoding_of(SamplingParams("a", 4, top_p=0.9)) != decoding_of(SamplingParams("a", 4))
    assert decoding_of(SamplingParams("a", 4, num_beams=2)) != decoding_of(SamplingParams("a", 5, num_beams=2))


def test_a_prompt_over_the_context_is_refused_before_generating(served):
    with pytest.raises(PromptTooLong, match="64-token context of model version v1"):
        encode(served, SamplingParams(" ".join(["cat"] * 50), max_new_tokens=16))


@pytest.fixture(scope="module")
def sentencepiece_like():
    """A BPE tokenizer with SentencePiece's Metaspace: a word-initial token decoded first loses its space."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    tokenizer.decoder = decoders.Metaspace(prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["</s>", "<unk>"])
    tokenizer.train_from_iterator(["The hotel by the lake. The shuttle runs to the hotel."] * 5, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="</s>", unk_token="<unk>")


def test_a_completion_is_what_the_tokenizer_decodes_after_the_prompt(sentencepiece_like):
    prompt_ids = sentencepiece_like("The hotel by the lake")["input_ids"]
    completion_ids = sentencepiece_like("The shuttle")["input_ids"]
    assert sentencepiece_like.decode(completion_ids) == "The shuttle"  # alone, the space is gone
    prompt_text = sentencepiece_like.decode(prompt_ids)
    after = decoded_after(sentencepiece_like, prompt_ids, prompt_text, completion_ids)
    assert after == " The shuttle"
    assert prompt_text + after == "The hotel by the lake The shuttle"


def test_a_byte_level_completion_decodes_the_same_alone_or_after_the_prompt(served):
    tokenizer = served.tokenizer
    prompt_ids, completion_ids = tokenizer("The cat\n\n")["input_ids"], tokenizer(" sat on")["input_ids"]
    assert decoded_after(tokenizer, prompt_ids, tokenizer.decode(prompt_ids), completion_ids) == " sat on"
