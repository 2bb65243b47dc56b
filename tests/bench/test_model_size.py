"""The model-size benchmark's measures: bits per byte against a known model, and the held-out split's check."""

from __future__ import annotations

import math

import pytest
import torch
from learning import demo_records
from model_size import grid, heldout_loss, no_shared_paragraphs, reference

from deploy.demo_site import load_articles
from trainer import bootstrap, data

SHAPE = bootstrap.TinyGPT2(vocab_size=300, n_layer=1, n_embd=16, n_head=2, n_positions=96)


@pytest.fixture(scope="module")
def pages():
    return data.latest_pages(demo_records(load_articles())[0])


def test_a_uniform_model_costs_log2_vocabulary_bits_per_token(pages):
    tokenizer = bootstrap.train_tokenizer(data.corpus_texts(pages[:6], data.LabelSet()), SHAPE)
    model = bootstrap.tiny_gpt2(tokenizer, SHAPE)
    with torch.no_grad():
        model.transformer.wte.weight.zero_()  # tied to the output head: every logit 0, every token 1 / V
    pairs = data.expansion_pairs(pages[:2])
    bits, perplexity = heldout_loss(model, tokenizer, pairs, SHAPE.n_positions)
    assert perplexity == pytest.approx(len(tokenizer), rel=1e-4)
    # Bits per byte: log2(V) per scored token over the completion bytes those tokens stand for (cut at 96 positions)
    tokens = scored = 0
    for pair in pairs:
        prompt = tokenizer(pair.prompt, add_special_tokens=False)["input_ids"]
        completion = tokenizer(pair.completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        kept = min(len(completion), SHAPE.n_positions - len(prompt))
        if kept <= 0:
            continue
        tokens += kept
        scored += len(tokenizer.decode(completion[:kept], skip_special_tokens=True).encode())
    assert bits == pytest.approx(tokens * math.log2(len(tokenizer)) / scored, rel=1e-4)


def test_held_out_pages_sharing_a_paragraph_with_training_pages_are_refused(pages):
    no_shared_paragraphs(*data.split_pages(pages))  # the demo's split: no paragraph in common
    shared = len(pages[0].text.split("\n\n"))
    with pytest.raises(SystemExit, match=f"{shared} held-out paragraphs"):
        no_shared_paragraphs(pages[:2], [pages[0]])


def test_the_reference_row_is_the_current_default_and_comes_first():
    assert grid("default")[0] == reference() == grid("quick")[0]
    assert reference().vocab_size == bootstrap.TinyGPT2().vocab_size
    assert len(set(grid("default"))) == len(grid("default"))
