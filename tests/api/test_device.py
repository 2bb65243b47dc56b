"""The API refuses device=cuda without a GPU at start-up, and loads a version onto the device it is given."""

from __future__ import annotations

import argparse

import pytest
import torch

from api import main as api_main
from api.serving.generation import SamplingParams, generate
from api.serving.model_loader import load_version
from ctrlgpt.settings import Settings
from models import devices


def test_the_api_asked_to_use_a_missing_gpu_stops_before_serving(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(api_main.uvicorn, "run", lambda *args, **kwargs: pytest.fail("the API started serving"))
    monkeypatch.setattr(api_main.bus, "ensure_topics", lambda *args: pytest.fail("the API reached Kafka"))
    with pytest.raises(devices.NoGpu):
        api_main.main(Settings(data_dir=tmp_path, device="cuda"), argparse.Namespace())


def test_a_version_and_its_reward_model_are_loaded_onto_the_given_device(make_scored_version):
    version = make_scored_version("v-device")
    served = load_version(version.path, version.manifest_sha256, device=torch.device("cpu"))
    assert served.model.device.type == "cpu" and served.scorer.model.device.type == "cpu"
    seeded = SamplingParams(prompt="The cat sat", max_new_tokens=6, seed=7)
    assert generate(served, seeded).completion == generate(served, seeded).completion
    assert len(served.scorer.classify(["a sunny day"])) == 1
