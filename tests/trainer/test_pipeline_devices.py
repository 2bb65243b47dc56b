"""Where the trainer runs: its Trainers on the chosen device, and a missing GPU refused before any stage."""

from __future__ import annotations

import pytest
import torch

from ctrlgpt.settings import Settings
from models import devices
from trainer import hf, pipeline
from trainer.progress import ProgressReporter


def test_the_trainers_run_on_the_cpu_only_when_it_is_the_device(tmp_path):
    assert hf.trainer_arguments(tmp_path, 0, torch.device("cpu"))["use_cpu"] is True
    assert hf.trainer_arguments(tmp_path, 0, torch.device("cuda"))["use_cpu"] is False


def test_a_run_asked_to_use_a_missing_gpu_fails_before_any_stage(tmp_path, monkeypatch, make_pages, make_labels):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    events = []
    with pytest.raises(devices.NoGpu):
        pipeline.train(
            Settings(data_dir=tmp_path, device="cuda"),
            "no-gpu",
            make_pages(4),
            make_labels(4),
            reporter=ProgressReporter("no-gpu", events.append),
        )
    assert events == [] and not (tmp_path / "runs").exists()
