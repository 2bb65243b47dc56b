"""Continuous batching: the pure admission rules, then the worker thread and tickets on a real tiny model."""

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
    Ticket,
    WorkerClosed,
    admit,
    admits,
    retry_after_s,
    split_to_fit,
    take_batch,
)
from api.serving.generation import Completion, SamplingParams

WAIT_S = 60  # generous bound on waiting for the worker thread; no timing is asserted


def test_take_batch_takes_the_oldest_and_its_compatible_ones_in_order():
    assert take_batch(["a", "b", "a", "a", "c", "a"], max_size=3) == [0, 2, 3]
    assert take_batch(["b", "a", "a"], max_size=8) == [0]
    assert take_batch([], max_size=4) == []


def test_requests_join_the_running_rows_oldest_first_while_there_is_room():
    assert admit([None, None, None], running=0, max_size=2) == ([0, 1], [])
    assert admit([None, None, None], running=1, max_size=2) == ([0], [])
    assert admit([None, None], running=2, max_size=2) == ([], [])  # full: they wait for a row to leave
    assert admit([], running=0, max_size=2) == ([], [])


def test_beam_requests_run_with_the_queued_ones_of_their_key_beside_the_running_rows():
    assert admit(["b", None, "c", "b", None], running=2, max_size=3) == ([1], [0, 3])
    assert admit([None, "b"], running=3, max_size=3) == ([], [1])


def test_split_to_fit_keeps_the_longest_prompt_plus_most_new_tokens_within_the_context():
    assert split_to_fit([(10, 5), (20, 5), (5, 30)], context=64) == [[0, 1, 2]]
    # 50 + 30 > 64: the long prompt cannot run as long as the third row's 30 new tokens.
    assert split_to_fit([(10, 5), (50, 5), (5, 30)], context=64) == [[0, 1], [2]]
    assert split_to_fit([(60, 4), (60, 4)], context=64) == [[0, 1]]
    assert split_to_fit([], context=64) == []


def test_retry_after_counts_the_rounds_of_queued_requests_and_the_running_one_and_is_at_least_a_second():
    assert retry_after_s(queued=0, max_size=4, request_s=0.01) == 1
    assert retry_after_s(queued=8, max_size=4, request_s=2.0) == 6  # two rounds of queued ones and the running one
    assert retry_after_s(queued=9, max_size=4, request_s=1.5) == 6  # a partial round is a round: 4 x 1.5


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
def prompt_runs(served):
    """The rows of every forward pass on `served` that runs prompts (more than one token a row)."""
    sizes: list[int] = []

    def record(module, args, kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[1] > 1:
            sizes.append(ids.shape[0])

    hook = served.model.register_forward_pre_hook(record, with_kwargs=True)
    yield sizes
    hook.remove()


@pytest.fixture()
def held(served):
    """Every forward pass on `served` waits for `release` (set it, or the test's end does); `running` tells one began."""
    running, release = threading.Event(), threading.Event()

    def hold(module, args, kwargs):
        running.set()
        release.wait(WAIT_S)

    hook = served.model.register_forward_pre_hook(hold, with_kwargs=True)
    yield running, release
    release.set()
    hook.remove()


def _finish(recorders: list[Recorder]) -> None:
    for recorder in recorders:
        assert recorder.done.wait(WAIT_S), "the worker never finished a request"


def test_requests_queued_together_start_together_whatever_their_sampling_and_each_gets_its_own_text(
    served, prompt_runs
):
    worker = BatchWorker("test", max_size=4, max_queued=64)
    prompts = ["The cat", "A sunny day", "Kafka keeps", "Good food and good"]
    settings = [{"temperature": 0}, {"temperature": 0.8, "seed": 1}, {"temperature": 0}, {"top_p": 0.9, "seed": 2}]
    recorders = [Recorder() for _ in prompts]
    worker.submit_all(
        served,
        [(SamplingParams(p, max_new_tokens=5, **kw), r) for p, kw, r in zip(prompts, settings, recorders)],
    )
    _finish(recorders)
    worker.close()
    assert prompt_runs == [4]
    for prompt, recorder in zip(prompts, recorders):
        assert recorder.error is None
        assert recorder.completion.text == prompt + "\n\n" + recorder.completion.completion  # the template's prompt
        assert "".join(recorder.deltas) == recorder.completion.completion


def test_a_request_joins_the_running_rows_mid_batch_and_a_short_one_leaves_before_a_long_one(served, prompt_runs):
    worker = BatchWorker("test", max_size=4, max_queued=64)
    long, short = Recorder(), Recorder()
    forward_calls, stepping, submitted = [], threading.Event(), threading.Event()

    def hold_first_step(module, args, kwargs):
        forward_calls.append(kwargs["input_ids"].shape)
        if len(forward_calls) == 2:  # the long request's first decoding step waits for the short one to be queued
            stepping.set()
            submitted.wait(WAIT_S)

    hook = served.model.register_forward_pre_hook(hold_first_step, with_kwargs=True)
    try:
        worker.submit(served, SamplingParams("The cat", max_new_tokens=40, temperature=0), long)
        assert stepping.wait(WAIT_S), "the long request never decoded"
        worker.submit(served, SamplingParams("Kafka keeps", max_new_tokens=3, seed=4), short)
        submitted.set()
        _finish([short])
        assert not long.done.is_set()  # the short one joined the running long one and left before it
        _finish([long])
    finally:
        submitted.set()
        hook.remove()
    worker.close()
    assert prompt_runs == [1, 1]  # two prompt runs: the second request did not wait for the first to end
    assert long.completion.completion_tokens == 40
    assert short.completion.completion_tokens == 3
    assert [shape[0] for shape in forward_calls[3:5]] == [2, 2]  # then both rows decoded in one step


def test_a_client_that_leaves_frees_its_row_while_the_others_decode_on(served):
    worker = BatchWorker("test", max_size=4, max_queued=64)
    stays, leaves = Recorder(), Recorder()
    rows_per_forward: list[int] = []

    def leave_at_the_second_step(module, args, kwargs):
        rows_per_forward.append(kwargs["input_ids"].shape[0])
        if len(rows_per_forward) == 3:
            leaves.cancelled = True  # as a Ticket is when its streaming client disconnects

    hook = served.model.register_forward_pre_hook(leave_at_the_second_step, with_kwargs=True)
    try:
        worker.submit_all(
            served,
            [
                (SamplingParams("The cat", max_new_tokens=10, temperature=0), stays),
                (SamplingParams("The cat", max_new_tokens=10, temperature=0), leaves),
            ],
        )
        _finish([stays, leaves])
    finally:
        hook.remove()
    worker.close()
    assert leaves.completion.finish_reason == "cancelled"
    assert leaves.completion.completion_tokens == 2  # its first token and one step's: it left during the next
    assert stays.completion.completion_tokens == 10
    assert rows_per_forward == [2, 2, 2] + [1] * 7  # the prompt run, two steps of both, then the one left


def test_two_versions_of_one_name_never_share_a_batch(served, v2, prompt_runs):
    other = v2.load()
    worker = BatchWorker("test", max_size=2, max_queued=64)
    old, new = Recorder(), Recorder()
    worker.submit(served, SamplingParams("The cat", max_new_tokens=3), old)
    worker.submit(other, SamplingParams("The cat", max_new_tokens=3), new)
    _finish([old, new])
    worker.close()
    assert (old.completion.version, new.completion.version) == ("v1", "v2")
    assert prompt_runs == [1]  # the hook watches v1 only: it ran alone


def test_a_prompt_too_long_fails_alone_and_a_cancelled_request_is_skipped(served, prompt_runs):
    worker = BatchWorker("test", max_size=3, max_queued=64)
    too_long, gone, fine = Recorder(), Recorder(cancelled=True), Recorder()
    worker.submit_all(
        served,
        [
            (SamplingParams(" ".join(["cat"] * 60), max_new_tokens=8), too_long),
            (SamplingParams("The cat", max_new_tokens=8), gone),
            (SamplingParams("The cat", max_new_tokens=8), fine),
        ],
    )
    _finish([too_long, fine])
    worker.close()
    assert "context" in str(too_long.error)
    assert fine.completion is not None
    assert (gone.prompt_tokens, gone.completion) == (None, None)
    assert prompt_runs == [1]


def test_beam_search_still_runs_as_one_static_batch(served, prompt_runs):
    worker = BatchWorker("test", max_size=4, max_queued=64)
    recorders = [Recorder(), Recorder()]
    worker.submit_all(served, [(SamplingParams("The cat", max_new_tokens=4, num_beams=2), r) for r in recorders])
    _finish(recorders)
    worker.close()
    assert prompt_runs == [4]  # two requests of two beams each, in one generate call
    assert recorders[0].completion.completion == recorders[1].completion.completion


def test_closing_fails_what_is_still_queued_and_lets_the_running_rows_finish(served, held):
    running, release = held
    worker = BatchWorker("test", max_size=1, max_queued=64)
    first, waiting = Recorder(), Recorder()
    worker.submit(served, SamplingParams("The cat", max_new_tokens=3), first)
    assert running.wait(WAIT_S), "the worker never started the first request"
    worker.submit(served, SamplingParams("The cat", max_new_tokens=3), waiting)
    threading.Timer(0.2, release.set).start()  # close() first fails the queue, then waits for the running row
    worker.close()
    assert isinstance(waiting.error, WorkerClosed)
    assert first.completion is not None
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


def test_a_full_queue_refuses_a_request_at_once_and_takes_requests_again_once_it_drains(served, held):
    running, release = held  # the first request holds the worker until the queue has been tried
    worker = BatchWorker("test", max_size=1, max_queued=2)
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
    _finish([first, *queued])
    later = Recorder()
    worker.submit(served, SamplingParams("The cat", max_new_tokens=2), later)
    _finish([later])
    worker.close()
    assert all(recorder.completion is not None for recorder in [first, *queued, later])


def test_deltas_that_queued_up_behind_a_slow_reader_come_as_one():
    async def run() -> list:
        ticket = Ticket(asyncio.get_running_loop())
        for event in [Started(3), Delta("a"), Delta("b"), Delta("c")]:
            ticket.arrived(event)
        events = ticket.events()
        read = [await anext(events), await anext(events)]  # the three deltas had all arrived: one
        done = Completion("v1", "xabcd", "abcd", 3, 4)
        ticket.arrived(Delta("d"))
        ticket.arrived(done)
        read += [event async for event in events]
        return read

    assert asyncio.run(run()) == [Started(3), Delta("abc"), Delta("d"), Completion("v1", "xabcd", "abcd", 3, 4)]
