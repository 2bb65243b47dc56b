"""base_model (CTRLGPT_BASE_MODEL) with full weights: a run from a local GPT-2 directory trains that model and
registers it with base_model = the path; the offline bootstrap (tokenizer, pretraining pass) is not used."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from ctrlgpt.settings import Settings
from models import manifest
from models.policy import load_causal_lm
from trainer import bootstrap, data, pipeline
from trainer.progress import ProgressReporter
from trainer.run_config import RunConfig
from trainer.steering import Offsets


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, make_pages, make_labels):
    """A tiny GPT-2 as a user would download one: safetensors, end-of-text as its only special token and no pad
    token (the run must add one), a vocabulary a bootstrap would never learn (300)."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = data.corpus_texts(make_pages(24), data.current_labels(make_labels(40)))
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=300, special_tokens=[bootstrap.EOS_TOKEN], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=bootstrap.EOS_TOKEN, eos_token=bootstrap.EOS_TOKEN, model_max_length=128
    )
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=16, n_layer=1, n_head=2)
    directory = tmp_path_factory.mktemp("base") / "local-gpt2"
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    assert (directory / "model.safetensors").is_file() and tokenizer.pad_token is None
    return directory


@pytest.fixture(scope="module")
def settings(tmp_path_factory, base_dir) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        base_model=str(base_dir),
        targets="positive",
        sft_epochs=1,
        sft_incremental_epochs=1,
        reward_epochs=1,
        reward_incremental_epochs=1,
        ppo_episodes=8,
        target_sft_epochs=1,
        bootstrap_pretrain_epochs=2,  # set, and ignored: a base model is not bootstrapped
        gate_reward_margin=-1000.0,  # the path, not the model's quality, is under test: let the run promote
        gate_max_kl=1000.0,
        seed=3,
    )


@pytest.fixture(scope="module")
def run(settings, make_pages, make_labels):
    events = []
    outcomes = pipeline.train(
        RunConfig.from_settings(settings),
        "base-model-run",
        make_pages(24),
        make_labels(40),
        reporter=ProgressReporter("base-model-run", events.append),
        offsets=Offsets(labels={"0": 40}, pages={"0": 24}),
    )
    return outcomes[0], events


def test_a_run_from_a_local_gpt2_is_registered_with_that_path_as_base(settings, run):
    outcome, _ = run
    checked = manifest.verify(outcome.path, outcome.manifest_sha256)
    assert outcome.status == "promoted" and checked.base_model == str(settings.base_model)
    assert checked.adapter is None and "policy/model.safetensors" in checked.files


def test_the_version_is_the_base_model_trained_not_a_bootstrap(base_dir, run):
    outcome, events = run
    trained, tokenizer = load_causal_lm(outcome.path / "policy")
    base, _ = load_causal_lm(base_dir)
    # The base's vocabulary and shape, one pad token added (GPT-2 has none)
    assert len(tokenizer) == base.config.vocab_size + 1 == trained.config.vocab_size
    assert tokenizer.pad_token == bootstrap.PAD_TOKEN and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert trained.config.n_layer == base.config.n_layer and trained.config.n_embd == base.config.n_embd
    assert not torch.allclose(trained.transformer.h[0].attn.c_attn.weight, base.transformer.h[0].attn.c_attn.weight)
    assert not [event for event in events if "pretrain" in event.message]


def test_the_next_run_warm_starts_from_the_version_over_the_same_base(settings, run):
    outcome, _ = run
    policy = bootstrap.start_policy(str(settings.base_model), ["unused corpus"], outcome.path, seed=0)
    assert policy.parent_version == outcome.version and policy.base_model == str(settings.base_model)
    assert policy.sft_learning_rate == bootstrap.PRETRAINED_LEARNING_RATE
