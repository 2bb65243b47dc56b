"""Which device the trainer and the API run on: the rule, and where an impossible choice is refused."""

from __future__ import annotations

import pydantic
import pytest
import torch

from ctrlgpt.settings import Settings
from trainer import devices, hf


@pytest.mark.parametrize(
    ("setting", "cuda_available", "expected"),
    [
        ("cpu", False, "cpu"),
        ("cpu", True, "cpu"),
        ("auto", False, "cpu"),
        ("auto", True, "cuda"),
        ("cuda", True, "cuda"),
    ],
)
def test_the_setting_resolves_to_a_device(setting, cuda_available, expected):
    assert devices.resolve(setting, cuda_available) == torch.device(expected)


def test_cuda_without_a_gpu_is_refused_with_what_to_do():
    with pytest.raises(devices.NoGpu, match="device=cuda but torch sees no CUDA GPU.*CTRLGPT_DEVICE=auto or cpu"):
        devices.resolve("cuda", cuda_available=False)


def test_an_unknown_device_is_refused():
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        devices.resolve("tpu", cuda_available=True)
    with pytest.raises(pydantic.ValidationError):
        Settings(device="gpu")


def test_the_default_asks_torch_and_is_the_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert Settings().device == "auto" and devices.of(Settings()) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.of(Settings()) == torch.device("cuda")


def test_the_trainers_run_on_the_cpu_only_when_it_is_the_device(tmp_path):
    assert hf.trainer_arguments(tmp_path, 0, torch.device("cpu"))["use_cpu"] is True
    assert hf.trainer_arguments(tmp_path, 0, torch.device("cuda"))["use_cpu"] is False


def test_the_device_line_names_the_cpu_and_torch():
    assert devices.describe(torch.device("cpu")) == f"cpu, torch {torch.__version__}"
