"""Dynamic batching: the pure grouping rules, then the worker thread and tickets on a real tiny model."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import pytest

from api.serving.batching import (
    Batcher,
    BatchWorker,
    Delta,
    QueueFull,
    Started,
    WorkerClosed,
    admits,
    retry_after_s,
    seconds_to_wait,
    split_to_fit,
    take_batch,
)
from api.serving.generation import Completion, SamplingParams

WAIT_S = 60  # generous bound on waiting for the worker thread; no timing is asserted
LONG_WAIT_S = 30.0  # a batch window no test reaches: batches start because they are full


def test_take_batch_takes_the_oldest_and_its_compatible_ones_in_order():
    assert take_batch(["a", "b", "a", "a", "c", "a"], max_size=3) == [0, 2, 3]
    assert take_batch(["b", "a", "a"], max_size=8) == [0]
    assert take_batch([], max_size=4) == []


def test_the_oldest_waits_for_company_until_its_batch_is_full_or_its_time_is_up():
    assert seconds_to_wait(["a", "b"], oldest_waited_s=0.001, max_size=2, max_wait_s=0.005) == pytest.approx(0.004)
    assert seconds_to_wait(["a", "b", "a"], oldest_waited_s=0.0, max_size=2, max_wait_s=0.005) == 0.0
    assert seconds_to_wait(["a"], oldest_waited_s=0.009, max_size=2, max_wait_s=0.005) == 0.0
    assert seconds_to_wait(["a"], oldest_waited_s=0.0, max_size=1, max_wait_s=0.005) == 0.0


def test_split_to_fit_keeps_the_longest_prompt_plus_most_new_tokens_within_the_context():
    assert split_to_fit([(10, 5), (20, 5), (5, 30)], context=64) == [[0, 1, 2]]
    # 50 + 30 > 64: the long prompt cannot run as long as the third row's 30 new tokens.
    assert split_to_fit([(10, 5), (50, 5), (5, 30)], context=64) == [[0, 1], [2]]
    assert split_to_fit([(60, 4), (60, 4)], context=64) == [[0, 1]]
    assert split_to_fit([], context=64) == []


def test_retry_after_counts_the_queued_batches_and_the_running_one_and_is_at_least_a_second():
    assert retry_after_s(queued=0, max_size=4, batch_s=0.01) == 1
    assert retry_after_s(queued=8, max_size=4, batch_s=2.0) == 6  # two queued batches and the running one
    assert retry_after_s(queued=9, max_size=4, batch_s=1.5) == 6  # a partial batch is a batch: 4 x 1.5


def test_a_call_is_admitted_whole_or_not_at_all_and_an_empty_queue_takes_any_call():
    assert admits(queued=0, arriving=100, max_queued=4)
    assert admits(queued=2, arriving=2, max_queued=4)
    assert not admits(queued=3, arriving=2, max_queued=4)
    assert not admits(queued=4, arriving=1, max_queued=4)


@dataclass
class Recorder:
    """A sink the worker thread reports to; `done` is set once the request finished or failed."""

    cancelled: bool = False
    prompt_tokens: int | None = None
    deltas: list[str] = field(default_factory=list)
    completion: Completion | None = None
    error: Exception | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def started(self, prompt_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens

    def delta(self, text: str) -> None:
        self.deltas.append(text)

    def finished(self, completion: Completion) -> None:
        self.completion = completion
        self.done.set()

    def failed(self, error: Exception) -> None:
        self.error = error
        self.done.set()


@pytest.fixture(scope="module")
def served(v1):
    return v1.load()


@pytest.fixture()
def batch_sizes(served):
    """The batch size of every `generate` call on `served` (read at its first forward pass)."""
    sizes: list[int] = []

    def record(module, args, kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[1] > 1:
            sizes.append(ids.shape[0])

    hook = served.model.register_forward_pre_hook(record, with_kwargs=True)
    yield sizes
    hook.remove()


def _finish(recorders: list[Recorder]) -> None:
    for recorder in recorders:
        assert recorder.done.wait(WAIT_S), "the worker never finished a request"


def test_compatible_requests_run_as_one_batch_and_each_gets_its_own_text(served, batch_sizes):
    worker = BatchWorker("test", max_size=4, max_wait_s=LONG_WAIT_S, max_queued=64)
    prompts = ["The cat", "A sunny day", "Kafka keeps", "Good food and good"]
    recorders = [Recorder() for _ in prompts]
    for prompt, recorder in zip(prompts, recorders):
        worker.submit(served, SamplingParams(prompt, max_new_tokens=5, seed=len(prompt)), recorder)
    _finish(recorders)
    worker.close()
    assert batch_sizes == [4]
    for prompt, recorder in zip(prompts, recorders):
        assert recorder.error is None
        assert recorder.completion.text == prompt + "\n\n" + recorder.completion.completion  # the template's prompt
        assert "".join(recorder.deltas) == recorder.completion.completion


def test_incompatible_settings_never_share_a_batch(served, batch_sizes):
    worker = BatchWorker("test", max_size=2, max_wait_s=LONG_WAIT_S, max_queued=64)
    recorders = [Recorder() for _ in range(4)]
    settings = [{"temperature": 0}, {"temperature": 0.8}, {"temperature": 0}, {"temperature": 0.8}]
    for setting, recorder in zip(settings, recorders):
        worker.submit(served, SamplingParams("The cat", max_new_tokens=3, **setting), recorder)
    _finish(recorders)
    worker.close()
    assert batch_sizes == [2, 2]
    assert recorders[0].completion.completion == recorders[2].completion.completion  # both greedy


def test_two_versions_of_one_name_never_share_a_batch(served, v2, batch_sizes):
    other = v2.load()
    worker = BatchWorker("test", max_size=2, max_wait_s=0.01, max_queued=64)
    old, new = Recorder(), Recorder()
    worker.submit(served, SamplingParams("The cat", max_new_tokens=3), old)
    worker.submit(other, SamplingParams("The cat", max_new_tokens=3), new)
    _finish([old, new])
    worker.close()
    assert (old.completion.version, new.completion.version) == ("v1", "v2")
    assert batch_sizes == [1]  # the hook watches v1 only: it ran alone


def test_a_prompt_too_long_fails_alone_and_a_cancelled_request_is_skipped(served, batch_sizes):
    worker = BatchWorker("test", max_size=3, max_wait_s=LONG_WAIT_S, max_queued=64)
    too_long, gone, fine = Recorder(), Recorder(cancelled=True), Recorder()
    worker.submit(served, SamplingParams(" ".join(["cat"] * 60), max_new_tokens=8), too_long)
    worker.submit(served, SamplingParams("The cat", max_new_tokens=8), gone)
    worker.submit(served, SamplingParams("The cat", max_new_tokens=8), fine)
    _finish([too_long, fine])
    worker.close()
    assert "context" in str(too_long.error)
    assert fine.completion is not None
    assert (gone.prompt_tokens, gone.completion) == (None, None)
    assert batch_sizes == [1]


def test_closing_fails_what_is_still_queued(served):
    worker = BatchWorker("test", max_size=8, max_wait_s=LONG_WAIT_S, max_queued=64)
    waiting = Recorder()
    worker.submit(served, SamplingParams("The cat", max_new_tokens=3), waiting)
    worker.close()
    assert waiting.done.is_set()
    assert isinstance(waiting.error, WorkerClosed)
    with pytest.raises(WorkerClosed):
        worker.submit(served, SamplingParams("The cat", max_new_tokens=3), Recorder())


def test_a_ticket_streams_started_deltas_then_its_completion(api_settings, served):
    async def run() -> list:
        batcher = Batcher(api_settings)
        try:
            ticket = batcher.submit("test", served, SamplingParams("The cat", max_new_tokens=6, seed=1))
            return [event async for event in ticket.events()]
        finally:
            batcher.close()

    events = asyncio.run(run())
    assert isinstance(events[0], Started)
    assert isinstance(events[-1], Completion)
    assert all(isinstance(event, Delta) for event in events[1:-1])
    assert "".join(event.text for event in events[1:-1]) == events[-1].completion


def test_leaving_a_ticket_early_cancels_its_generation(api_settings, served):
    release = threading.Event()
    steps: list[int] = []  # tokens fed to each forward pass: the prompt's at a generation's start, then 1

    def hold(module, args, kwargs):
        steps.append(kwargs["input_ids"].shape[1])
        release.wait(WAIT_S)  # the first generation waits here until the test has left its ticket

    async def run() -> Completion:
        batcher = Batcher(api_settings)
        try:
            ticket = batcher.submit("test", served, SamplingParams("The cat", max_new_tokens=16, temperature=0))
            events = ticket.events()
            assert isinstance(await anext(events), Started)
            await events.aclose()
            assert ticket.cancelled
            release.set()
            # The same worker runs the next request only once the cancelled one has ended.
            after = batcher.submit("test", served, SamplingParams("The cat", max_new_tokens=16, temperature=0))
            return await after.result()
        finally:
            batcher.close()

    hook = served.model.register_forward_pre_hook(hold, with_kwargs=True)
    try:
        full = asyncio.run(run())
    finally:
        hook.remove()
    assert full.finish_reason == "length"
    starts = [index for index, fed in enumerate(steps) if fed > 1]
    assert len(starts) == 2
    cancelled_steps, full_steps = starts[1] - starts[0], len(steps) - starts[1]
    assert cancelled_steps < full_steps == 16


def test_a_full_queue_refuses_a_request_at_once_and_takes_requests_again_once_it_drains(served):
    release, running = threading.Event(), threading.Event()

    def hold(module, args, kwargs):
        running.set()
        release.wait(WAIT_S)  # the first batch holds the worker until the queue has been tried

    hook = served.model.register_forward_pre_hook(hold, with_kwargs=True)
    worker = BatchWorker("test", max_size=1, max_wait_s=0.0, max_queued=2)
    try:
        first = Recorder()
        worker.submit(served, SamplingParams("The cat", max_new_tokens=2), first)
        assert running.wait(WAIT_S), "the worker never started the first request"
        queued = [Recorder(), Recorder()]
        for recorder in queued:
            worker.submit(served, SamplingParams("The cat", max_new_tokens=2), recorder)
        with pytest.raises(QueueFull) as refused:
            worker.submit(served, SamplingParams("The cat", max_new_tokens=2), Recorder())
        assert refused.value.retry_after_s >= 1
        with pytest.raises(QueueFull):  # a call of several requests is refused whole
            worker.submit_all(served, [(SamplingParams("The cat", max_new_tokens=2), Recorder())] * 2)
    finally:
        release.set()
        hook.remove()
    _finish([first, *queued])
    later = Recorder()
    worker.submit(served, SamplingParams("The cat", max_new_tokens=2), later)
    _finish([later])
    worker.close()
    assert all(recorder.completion is not None for recorder in [first, *queued, later])
