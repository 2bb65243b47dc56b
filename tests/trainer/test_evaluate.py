"""Scoring and sampling on tiny random models: the measurements the gate relies on."""

from __future__ import annotations

import copy
import math

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


def test_prompts_are_sampled_in_batches_each_as_if_alone(policy, tokenizer, monkeypatch):
    # Near-greedy sampling: a prompt's responses then depend on the prompt alone, so a short prompt left-padded
    # beside a long one in one generate call must answer as it does alone (attention mask and positions skip the
    # padding), and every batch size gives the same samples in prompt order.
    monkeypatch.setattr(evaluate, "TEMPERATURE", 1e-4)
    prompts = ["Bad news\n\n", "A visit to the park and the good news and the bad news of the park\n\n", "Good\n\n"]
    alone = [evaluate.sample(policy, tokenizer, [prompt], seed=5, samples_per_prompt=2) for prompt in prompts]
    together = evaluate.sample(policy, tokenizer, prompts, seed=5, samples_per_prompt=2)
    assert [one.prompt for one in together] == [prompt for prompt in prompts for _ in range(2)]
    assert [one.response_ids for one in together] == [one.response_ids for run in alone for one in run]
    assert [one.prompt_ids for one in together] == [one.prompt_ids for run in alone for one in run]
    monkeypatch.setattr(evaluate, "GENERATION_ROWS", 2)  # one prompt per call
    one_by_one = evaluate.sample(policy, tokenizer, prompts, seed=5, samples_per_prompt=2)
    assert [one.response_ids for one in one_by_one] == [one.response_ids for one in together]


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


def test_a_model_that_knows_nothing_has_the_vocabulary_size_as_perplexity(policy, tokenizer):
    samples = evaluate.sample(policy, tokenizer, PROMPTS, seed=0, samples_per_prompt=2)
    uniform = copy.deepcopy(policy)
    with torch.no_grad():
        uniform.transformer.wte.weight.zero_()  # tied to the output layer: every logit is 0
    assert uniform.lm_head.weight.abs().sum() == 0
    assert evaluate.perplexity(uniform, tokenizer, samples) == pytest.approx(len(tokenizer), rel=1e-4)


def test_perplexity_is_the_geometric_mean_of_each_outputs_perplexity(policy, tokenizer):
    samples = evaluate.sample(policy, tokenizer, PROMPTS, seed=1, samples_per_prompt=2)
    each = [evaluate.perplexity(policy, tokenizer, [one]) for one in samples]
    assert evaluate.perplexity(policy, tokenizer, samples) == pytest.approx(
        math.prod(each) ** (1 / len(each)), rel=1e-5
    )
    assert all(value > 1 for value in each)


def test_a_sample_knows_whether_its_policy_ended_it(policy, tokenizer):
    for one in evaluate.sample(policy, tokenizer, PROMPTS, seed=2, samples_per_prompt=4):
        assert one.ended == (one.response_ids[-1] == tokenizer.eos_token_id)


class CountingJudge:
    """A judge sure of the target in every response containing "e", unsure (0.25) of the others."""

    def target_probabilities(self, texts):
        return [1.0 if "e" in text else 0.25 for text in texts]

    def rate(self, probabilities):
        return sum(p > 0.5 for p in probabilities) / len(probabilities)


def test_the_evaluator_measures_every_figure_of_the_gate(policy, scorer, tokenizer):
    torch.manual_seed(1)
    other = bootstrap.tiny_gpt2(tokenizer, TINY)
    evaluator = evaluate.Evaluator(
        PROMPTS,
        seed=4,
        reward_model=scorer,
        reward_tokenizer=tokenizer,
        threshold=0.0,
        reference=other,
        reference_tokenizer=tokenizer,
        judge=CountingJudge(),
        samples_per_prompt=2,
        lexicon=CountingJudge(),
    )
    candidate = evaluator.evaluate(policy, tokenizer, kl_reference=other)
    responses = [one.response for one in candidate.samples]
    assert candidate.figures.samples == len(responses) == 4
    with_e = sum("e" in text for text in responses)
    assert candidate.figures.judge_target_rate == with_e / 4
    assert candidate.figures.judge_target_mean == pytest.approx((with_e + 0.25 * (4 - with_e)) / 4)
    assert candidate.judge_probabilities == CountingJudge().target_probabilities(responses)
    assert candidate.lexicon_probabilities == candidate.judge_probabilities
    assert candidate.figures.lexicon_target_rate == with_e / 4 and candidate.figures.judges_agreement == 1.0
    scored = reward.score(scorer, tokenizer, [one.prompt + one.response for one in candidate.samples])
    assert candidate.rewards == pytest.approx(scored)
    assert candidate.figures.reward_mean == pytest.approx(sum(candidate.rewards) / 4)
    assert candidate.figures.perplexity == pytest.approx(evaluate.perplexity(other, tokenizer, candidate.samples))
    assert candidate.figures.kl == pytest.approx(evaluate.kl_to_reference(policy, other, candidate.samples))
    baseline = evaluator.evaluate(policy, tokenizer)
    assert baseline.figures.kl is None and [s.response_ids for s in baseline.samples] == [
        s.response_ids for s in candidate.samples
    ]
    without_judge = evaluate.Evaluator(
        PROMPTS,
        seed=4,
        reward_model=scorer,
        reward_tokenizer=tokenizer,
        threshold=0.0,
        reference=other,
        reference_tokenizer=tokenizer,
        judge=None,
        samples_per_prompt=2,
    ).evaluate(policy, tokenizer)
    assert without_judge.figures.judge_target_rate is None and without_judge.judge_probabilities is None
    assert without_judge.figures.lexicon_target_rate is None and without_judge.figures.reward_judge_agreement is None
    assert {"x_judge_target_rate", "x_judge_target_mean"}.isdisjoint(without_judge.figures.as_metrics("x"))
    assert candidate.figures.as_metrics("x")["x_judge_target_mean"] == candidate.figures.judge_target_mean


def test_without_labelled_passages_on_both_sides_the_threshold_is_the_rewards_zero() -> None:
    # A run on ratings, preferences or expansions alone has no sentiment boundary to learn from.
    assert evaluate.target_threshold(None, None, [], ["a negative passage"]) == 0.0
    assert evaluate.target_threshold(None, None, ["a positive passage"], []) == 0.0


def test_the_figures_say_how_often_the_reward_model_and_each_judge_agree() -> None:
    figures = evaluate.summarise(
        [1.0, -1.0, 1.0, -1.0],
        0.0,
        judge_target_rate=0.5,
        judge_probabilities=[0.9, 0.2, 0.1, 0.2],  # agrees with the reward on 3 of 4
        lexicon_probabilities=[0.7, 0.5, 0.2, 0.9],  # 0.5 is off the target side: agrees on 2 of 4
    )
    assert figures.reward_judge_agreement == 0.75 and figures.reward_lexicon_agreement == 0.5
    assert figures.judges_agreement == 0.75 and figures.lexicon_target_rate == 0.5
    metrics = figures.as_metrics("candidate")
    assert metrics["candidate_reward_lexicon_agreement"] == 0.5 and metrics["candidate_judges_agreement"] == 0.75
    alone = evaluate.summarise([1.0, -1.0], 0.0)
    assert alone.reward_judge_agreement is None and "candidate_judges_agreement" not in alone.as_metrics("candidate")


def test_a_response_that_decodes_to_no_text_is_measured_as_the_empty_answer(policy, tokenizer):
    prompt = "A title\n\n"
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    empty = evaluate.Sample(prompt, "", prompt_ids, [], False)
    ended = evaluate.Sample(prompt, "", prompt_ids, [tokenizer.eos_token_id], True)
    assert evaluate.perplexity(policy, tokenizer, [empty]) == pytest.approx(
        evaluate.perplexity(policy, tokenizer, [ended])
    )


def test_scoring_passes_give_the_one_at_a_time_figures_whatever_the_batch(policy, tokenizer, monkeypatch):
    samples = evaluate.sample(
        policy, tokenizer, PROMPTS + ["A much longer title about the park and the news\n\n"], seed=5
    )
    sequences = [(one.prompt_ids, one.response_ids) for one in samples]
    alone = [evaluate.response_logprobs(policy, [one], temperature=0.7)[0] for one in sequences]
    together = evaluate.response_logprobs(policy, sequences, temperature=0.7)
    # A budget of about two sequences' logits: several passes, each row padded to its batch's widest.
    monkeypatch.setattr(evaluate, "LOGITS_PER_PASS", 2 * 120 * len(tokenizer))
    in_small_batches = evaluate.response_logprobs(policy, sequences, temperature=0.7)
    assert len(together) == len(in_small_batches) == len(sequences) == 12
    for one, batched, small, (_, response_ids) in zip(alone, together, in_small_batches, sequences, strict=True):
        assert one.shape == (len(response_ids),)
        assert torch.allclose(batched, one, atol=1e-5) and torch.allclose(small, one, atol=1e-5)
        assert (one < 0).all()


def test_outputs_sampled_once_are_scored_as_if_sampled_again(policy, scorer, tokenizer):
    def evaluator(prompts, sign):
        return evaluate.Evaluator(
            prompts,
            seed=4,
            reward_model=reward.toward(scorer, sign),
            reward_tokenizer=tokenizer,
            threshold=0.0,
            reference=policy,
            reference_tokenizer=tokenizer,
            judge=CountingJudge(),
            samples_per_prompt=2,
        )

    toward_positive, toward_negative = evaluator(PROMPTS, 1), evaluator(PROMPTS, -1)
    outputs = toward_positive.outputs(policy, tokenizer)
    reused = toward_negative.evaluate(policy, tokenizer, outputs=outputs)
    sampled = toward_negative.evaluate(policy, tokenizer)
    assert [one.response_ids for one in reused.samples] == [one.response_ids for one in sampled.samples]
    assert reused.figures == sampled.figures
    assert reused.rewards == pytest.approx([-value for value in toward_positive.evaluate(policy, tokenizer).rewards])
    with pytest.raises(ValueError, match="other prompts"):
        evaluator(PROMPTS[:1], 1).evaluate(policy, tokenizer, outputs=outputs)
