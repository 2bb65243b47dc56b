from __future__ import annotations

import threading

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from trainer.progress import ProgressCallback, ProgressReporter, RunCancelled


@pytest.fixture
def published():
    return []


@pytest.fixture
def callback(published):
    return ProgressCallback(ProgressReporter("run-1", published.append), "ppo", threading.Event())


def state(step: int) -> TrainerState:
    return TrainerState(global_step=step, max_steps=8)


def test_trainer_logs_become_progress_events(callback, published, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[])
    callback.on_log(
        args, state(3), TrainerControl(), logs={"loss/policy_avg": 0.5, "objective/scores": 1.5, "objective/kl": 0.2}
    )
    callback.on_log(args, state(8), TrainerControl(), logs={"train_runtime": 12.0})  # closing summary: no event
    [event] = published
    assert (event.run_id, event.stage, event.step, event.total_steps) == ("run-1", "ppo", 3, 8)
    assert (event.loss, event.reward, event.kl) == (0.5, 1.5, 0.2)


def test_sft_loss_is_reported_as_loss(published, tmp_path):
    callback = ProgressCallback(ProgressReporter("run-2", published.append), "sft")
    callback.on_log(
        TrainingArguments(output_dir=str(tmp_path), report_to=[]), state(5), TrainerControl(), logs={"loss": 2.0}
    )
    assert published[0].loss == 2.0 and published[0].reward is None


def test_stop_cancels_the_run_between_steps(callback, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[])
    callback.on_step_end(args, state(1), TrainerControl())
    callback.stop.set()
    with pytest.raises(RunCancelled, match="ppo"):
        callback.on_step_end(args, state(2), TrainerControl())
