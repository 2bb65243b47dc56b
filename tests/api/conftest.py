"""A tiny but real model version on disk (byte-level BPE tokenizer, 2-layer GPT-2, manifest), and the API served by uvicorn."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from live_server import free_port
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

from api.main import create_app
from api.server import server_config
from api.serving.model_loader import load_version
from api.serving.served_model import ServedModel
from ctrlgpt import secrets
from ctrlgpt.settings import Settings
from models.manifest import Manifest, read_manifest, write_manifest

END = "<|endoftext|>"
SENTENCES = [
    "The cat sat on the mat and looked happy.",
    "A sunny day in the park makes everyone smile.",
    "Kafka keeps every record in order on its partition.",
    "The weather was gloomy and the train was late again.",
    "Good food and good friends make a great evening.",
]


@dataclass(frozen=True)
class FixtureVersion:
    version: str
    path: Path
    manifest_sha256: str

    def load(self) -> ServedModel:
        return load_version(self.path, self.manifest_sha256, device=torch.device("cpu"), expected_version=self.version)


@pytest.fixture(scope="session")
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=[END], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(SENTENCES, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=END, bos_token=END, unk_token=END)


@pytest.fixture(scope="session")
def make_version(tmp_path_factory, tiny_tokenizer) -> Callable[..., FixtureVersion]:
    """Factory: `make_version("v1", parent="v0")` writes a registered version in a fresh directory."""

    def make(
        version: str, *, parent: str | None = None, name: str = "expansion-policy", seed: int = 0
    ) -> FixtureVersion:
        version_dir = tmp_path_factory.mktemp("registry") / version
        policy = version_dir / "policy"
        tiny_tokenizer.save_pretrained(policy)
        config = GPT2Config(
            vocab_size=len(tiny_tokenizer),
            n_positions=64,
            n_embd=32,
            n_layer=2,
            n_head=2,
            bos_token_id=tiny_tokenizer.eos_token_id,
            eos_token_id=tiny_tokenizer.eos_token_id,
        )
        torch.manual_seed(seed)
        # transformers 5 writes safetensors only (model.safetensors).
        GPT2LMHeadModel(config).save_pretrained(policy)
        manifest = Manifest(
            name=name,
            version=version,
            parent_version=parent,
            base_model="bootstrap",
            status="promoted",
            metrics={"reward_mean": 0.25, "kl": 0.01},
        )
        return FixtureVersion(version, version_dir, write_manifest(version_dir, manifest))

    return make


@pytest.fixture(scope="session")
def v1(make_version) -> FixtureVersion:
    return make_version("v1", seed=1)


@pytest.fixture(scope="session")
def v2(make_version) -> FixtureVersion:
    return make_version("v2", parent="v1", seed=2)


@pytest.fixture(scope="session")
def api_settings(tmp_path_factory) -> Settings:
    # One target: the fixtures register one policy; tests of several targets widen `targets` themselves.
    return Settings(
        data_dir=tmp_path_factory.mktemp("data"), max_prompt_chars=200, max_new_tokens_limit=16, targets="positive"
    )


@pytest.fixture
def admin_settings(api_settings, tmp_path) -> Settings:
    """The API's settings with a data directory (registries, secrets) of the test's own."""
    return api_settings.model_copy(update={"data_dir": tmp_path})


@pytest.fixture
def admin_client(admin_settings) -> Iterator[TestClient]:
    with TestClient(create_app(admin_settings, follow_updates=False)) as client:
        yield client


@pytest.fixture
def admin_key(admin_settings) -> str:
    return secrets.load_or_create(admin_settings.secrets_file).api_admin_key


@pytest.fixture(scope="session")
def tampered(make_version) -> Callable[[str], FixtureVersion]:
    """Factory: a version whose weights changed by one byte after its manifest was written."""

    def make(version: str) -> FixtureVersion:
        fixture = make_version(version, parent="v1", seed=3)
        weights = fixture.path / "policy" / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF
        weights.write_bytes(bytes(data))
        return fixture

    return make


@pytest.fixture(scope="session")
def make_scored_version(make_version, tiny_tokenizer) -> Callable[..., FixtureVersion]:
    """Factory: a registered version with a reward model (`reward/`, as the trainer writes it) beside its policy."""

    def make(version: str, *, name: str = "expansion-policy", seed: int = 0, threshold: float = 0.0) -> FixtureVersion:
        fixture = make_version(version, name=name, seed=seed)
        reward = fixture.path / "reward"
        tokenizer = copy.deepcopy(tiny_tokenizer)
        tokenizer.add_special_tokens({"pad_token": "<|pad|>"})  # distinct from end-of-text, as the trainer's
        tokenizer.padding_side = "left"
        tokenizer.save_pretrained(reward)
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=64,
            n_embd=32,
            n_layer=2,
            n_head=2,
            num_labels=1,
            bos_token_id=tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        torch.manual_seed(seed)
        GPT2ForSequenceClassification(config).save_pretrained(reward)
        manifest = read_manifest(fixture.path)
        manifest = manifest.model_copy(update={"metrics": {**manifest.metrics, "target_threshold": threshold}})
        return FixtureVersion(version, fixture.path, write_manifest(fixture.path, manifest))

    return make


@pytest.fixture(scope="session")
def serve_api() -> Callable[[Settings, FastAPI], AbstractContextManager[str]]:
    """Factory: `with serve_api(settings, app) as url:` serves `app` as `ctrlgpt api` does (uvicorn, the
    API's timeouts) on a free loopback port, in a thread, until the block ends."""

    @contextmanager
    def serve(settings: Settings, app: FastAPI) -> Iterator[str]:
        settings = settings.model_copy(update={"api_host": "127.0.0.1", "api_port": free_port()})
        server = uvicorn.Server(server_config(settings, app))
        thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
        thread.start()
        try:
            while not server.started:
                if not thread.is_alive():
                    raise RuntimeError("uvicorn did not start")
                time.sleep(0.05)
            yield settings.api_url
        finally:
            server.should_exit = True
            thread.join(30)

    return serve
