"""The trainer's Hugging Face helpers: its Trainers run on the chosen device."""

from __future__ import annotations

import torch

from trainer import hf


def test_the_trainers_run_on_the_cpu_only_when_it_is_the_device(tmp_path):
    assert hf.trainer_arguments(tmp_path, 0, torch.device("cpu"))["use_cpu"] is True
    assert hf.trainer_arguments(tmp_path, 0, torch.device("cuda"))["use_cpu"] is False
