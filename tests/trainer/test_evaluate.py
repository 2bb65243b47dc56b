"""Scoring and sampling on tiny random models: the measurements the gate relies on."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import GPT2ForSequenceClassification

from trainer import bootstrap, evaluate, reward

TINY = bootstrap.TinyGPT2(vocab_size=300, n_layer=1, n_embd=16, n_head=2, n_positions=128)
PROMPTS = ["A visit to the park\n\n", "Bad news\n\n"]


@pytest.fixture(scope="module")
def tokenizer():
    return bootstrap.train_tokenizer(["a tiny corpus about the park and bad news and good news"] * 5, TINY)


@pytest.fixture(scope="module")
def policy(tokenizer):
    torch.manual_seed(0)
    return bootstrap.tiny_gpt2(tokenizer, TINY)


@pytest.fixture(scope="module")
def scorer(policy):
    torch.manual_seed(0)
    config = copy.deepcopy(policy.config)
    config.num_labels = 1
    return GPT2ForSequenceClassification(config)


def test_encoding_is_cut_to_fit_and_always_ends_with_eos(tokenizer):
    ids = reward.encode(tokenizer, "the park " * 50, max_tokens=16)
    assert len(ids) == 16 and ids[-1] == tokenizer.eos_token_id
    assert reward.encode(tokenizer, "")[-1] == tokenizer.eos_token_id


def test_a_score_does_not_depend_on_the_batch_it_is_padded_in(scorer, tokenizer):
    alone = reward.score(scorer, tokenizer, ["good news"])
    padded = reward.score(scorer, tokenizer, ["good news", "a much longer text about the park and the news"])
    assert padded[0] == pytest.approx(alone[0], abs=1e-5)


def test_sampling_is_reproducible_for_a_seed(policy, tokenizer):
    first = evaluate.sample(policy, tokenizer, PROMPTS, seed=3, samples_per_prompt=2)
    again = evaluate.sample(policy, tokenizer, PROMPTS, seed=3, samples_per_prompt=2)
    assert [s.response_ids for s in first] == [s.response_ids for s in again]
    assert len(first) == 4 and {s.prompt for s in first} == set(PROMPTS)
    for one in first:
        assert 0 < len(one.response_ids) <= evaluate.RESPONSE_TOKENS
        assert tokenizer.eos_token_id not in one.response_ids[:-1]


def test_kl_to_itself_is_zero_and_to_another_model_is_not(policy, tokenizer):
    samples = evaluate.sample(policy, tokenizer, PROMPTS, seed=0)
    assert evaluate.kl_to_reference(policy, copy.deepcopy(policy), samples) == pytest.approx(0.0, abs=1e-6)
    torch.manual_seed(1)
    other = bootstrap.tiny_gpt2(tokenizer, TINY)
    assert evaluate.kl_to_reference(policy, other, samples) != pytest.approx(0.0, abs=1e-3)


def test_target_rate_counts_samples_above_the_threshold(policy, scorer, tokenizer):
    samples = evaluate.sample(policy, tokenizer, PROMPTS, seed=0)
    scores = reward.score(scorer, tokenizer, [s.prompt + s.response for s in samples])
    everything = evaluate.figures_of(samples, scorer, tokenizer, threshold=min(scores) - 1)
    nothing = evaluate.figures_of(samples, scorer, tokenizer, threshold=max(scores) + 1, kl=0.25)
    assert (everything.target_rate, nothing.target_rate) == (1.0, 0.0)
    assert everything.reward_mean == pytest.approx(sum(scores) / len(scores), abs=1e-5)
    assert nothing.as_metrics("candidate")["candidate_kl"] == 0.25 and "x_kl" not in everything.as_metrics("x")
