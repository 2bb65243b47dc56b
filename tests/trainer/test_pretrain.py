"""The pretraining pass of a fresh bootstrap: which runs take it, what it reads, and that it teaches the text."""

from __future__ import annotations

import math

import pytest
import torch

from ctrlgpt.settings import Settings
from trainer import bootstrap, data, pretrain, stages
from trainer.run_config import RunConfig

SHAPE = bootstrap.TinyGPT2(vocab_size=400, n_layer=1, n_embd=32, n_head=2, n_positions=32)  # short blocks: many steps


@pytest.fixture(scope="module")
def tokenizer(make_pages):
    return bootstrap.train_tokenizer(data.corpus_texts(make_pages(24), data.LabelSet()), SHAPE)


def test_blocks_are_the_texts_as_one_stream_closed_by_end_of_text(tokenizer):
    texts = ["A visit to the park.", "It was wonderful and everyone loved it."]
    cut = pretrain.blocks(texts, tokenizer, block_tokens=5)
    stream = [token for block in cut for token in block]
    assert all(len(block) == 5 for block in cut[:-1]) and 0 < len(cut[-1]) <= 5
    assert stream.count(tokenizer.eos_token_id) == 2 and stream[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(stream, skip_special_tokens=True) == "".join(texts)


def test_only_the_training_pages_text_is_pretrained_on(make_pages, make_labels):
    pages = make_pages(24)
    training = data.build(pages, make_labels(10), "positive")
    train, held = data.split_pages(data.latest_pages(pages))
    assert held and training.pretraining_texts == data.corpus_texts(train, data.LabelSet())
    assert not {page.text for page in held} & set(training.pretraining_texts)
    assert {page.text for page in held} <= set(training.corpus)  # the tokenizer still covers every page


@pytest.mark.parametrize(
    ("epochs", "base", "parent", "expected"),
    [
        (2.0, bootstrap.BOOTSTRAP, None, True),
        (0.0, bootstrap.BOOTSTRAP, None, False),  # the setting off
        (2.0, bootstrap.BOOTSTRAP, "v0001", False),  # a warm start has been trained already
        (2.0, "/models/gpt2", None, False),  # a base model is pretrained already
    ],
)
def test_only_a_fresh_bootstrap_is_pretrained(tmp_path, tokenizer, epochs, base, parent, expected):
    config = RunConfig.from_settings(Settings(data_dir=tmp_path, bootstrap_pretrain_epochs=epochs))
    policy = bootstrap.Policy(None, tokenizer, base, parent, bootstrap.BOOTSTRAP_LEARNING_RATE)
    assert stages.pretrains(config, policy) is expected


def test_the_pass_lowers_the_loss_on_the_text_it_reads(tmp_path, tokenizer, make_pages):
    texts = data.corpus_texts(make_pages(24), data.LabelSet())
    torch.manual_seed(0)
    policy = bootstrap.Policy(
        bootstrap.tiny_gpt2(tokenizer, SHAPE), tokenizer, bootstrap.BOOTSTRAP, None, bootstrap.BOOTSTRAP_LEARNING_RATE
    )
    ids = torch.tensor([pretrain.blocks(texts, tokenizer, SHAPE.n_positions)[0]])

    def loss() -> float:
        policy.model.eval()
        with torch.no_grad():
            return float(policy.model(input_ids=ids, labels=ids).loss)

    before = loss()
    result = pretrain.train(policy, texts, epochs=2, seed=0, device=torch.device("cpu"), work_dir=tmp_path / "pt")
    assert result.steps > 0 and result.blocks == len(pretrain.blocks(texts, tokenizer, SHAPE.n_positions))
    assert math.isfinite(result.loss) and loss() < before - 0.15
