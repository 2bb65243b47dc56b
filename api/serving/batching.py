"""Dynamic batching: requests that arrive close together are generated in one batch.

A request waits up to `batch_max_wait_ms` for others compatible with it (the same
served version and the same `Decoding`, see api/serving/generation.py) and runs with up to
`batch_max_size - 1` of them, left-padded, in one `generate` call. Every model name has
one worker thread, so generation never runs on the event loop and a version's model
and tokenizer are only ever used by that thread. Rows keep their own seed, length, stop
strings and cancellation, and each request's `Ticket` sees only its own events.

Each worker records its queue, batches, tokens and each request's time to first text in
`GenerationMetrics` (GET /metrics), labelled by model name and version.

Each worker's queue is bounded (`generate_queue_max`): a request that would overflow it
is refused at once with `QueueFull` and an estimate of when to come back (the routes
answer 429 with Retry-After), so a burst is told to wait instead of timing out.

The grouping rules are the pure functions at the top; the thread and the asyncio side
are below them.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from dataclasses import dataclass, field

import structlog
from prometheus_client import Histogram

from api.serving.generation import (
    Completion,
    Decoding,
    PromptTooLong,
    Row,
    RowSink,
    SamplingParams,
    context_length,
    decoding_of,
    encode,
    run_batch,
)
from api.serving.generation_metrics import GenerationMetrics
from api.serving.served_model import ServedModel
from ctrlgpt.settings import Settings

log = structlog.get_logger()


def take_batch(keys: Sequence[Hashable], max_size: int) -> list[int]:
    """Positions of the next batch in a queue (oldest first): the oldest and the next ones with its key."""
    if not keys:
        return []
    first = keys[0]
    return [index for index, key in enumerate(keys) if key == first][:max_size]


def seconds_to_wait(keys: Sequence[Hashable], oldest_waited_s: float, max_size: int, max_wait_s: float) -> float:
    """How much longer the oldest request should wait for company: none once its batch is full or its wait is over."""
    if len(take_batch(keys, max_size)) >= max_size:
        return 0.0
    return max(0.0, max_wait_s - oldest_waited_s)


def split_to_fit(lengths: Sequence[tuple[int, int]], context: int) -> list[list[int]]:
    """Split rows (prompt tokens, new tokens), in order, into batches that fit the context.

    With left padding every row of a batch runs for the batch's most new tokens, so a
    batch fits when its longest prompt plus its most new tokens fit. Each row fits alone
    (`encode` refused the others).
    """
    batches: list[list[int]] = []
    longest_prompt = most_new = 0
    for index, (prompt, new) in enumerate(lengths):
        if batches and max(longest_prompt, prompt) + max(most_new, new) <= context:
            batches[-1].append(index)
            longest_prompt, most_new = max(longest_prompt, prompt), max(most_new, new)
        else:
            batches.append([index])
            longest_prompt, most_new = prompt, new
    return batches


def retry_after_s(queued: int, max_size: int, batch_s: float) -> int:
    """Whole seconds until a queue of `queued` requests has drained: its batches and the running one, at least 1."""
    batches = math.ceil(queued / max_size) + 1
    return max(1, math.ceil(batches * batch_s))


def admits(queued: int, arriving: int, max_queued: int) -> bool:
    """Whether `arriving` requests fit in a queue of `queued`; an empty queue takes any one call (a call's
    choices must not be refused forever because there are more of them than the bound)."""
    return queued == 0 or queued + arriving <= max_queued


class WorkerClosed(RuntimeError):
    """The API is shutting down: the request was not generated."""


class QueueFull(RuntimeError):
    """The model's generation queue is full: come back after `retry_after_s` seconds."""

    def __init__(self, model_name: str, queued: int, retry_after_s: int) -> None:
        super().__init__(
            f"the generation queue of {model_name} is full ({queued} requests wait): retry in {retry_after_s} s"
        )
        self.retry_after_s = retry_after_s


@dataclass(eq=False)
class _Request:
    served: ServedModel
    params: SamplingParams
    sink: Ticket
    arrived: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> tuple[ServedModel, Decoding]:
        # ServedModel compares by identity: versions, even of one name, never share a batch.
        return self.served, decoding_of(self.params)


class BatchWorker:
    """One thread that runs the batches of one model name's requests, oldest request first."""

    # Until a batch has run, the Retry-After estimate assumes a batch takes this long.
    FIRST_BATCH_S = 1.0
    # How much each batch's duration moves the running estimate.
    BATCH_S_WEIGHT = 0.2

    def __init__(
        self, name: str, max_size: int, max_wait_s: float, max_queued: int, metrics: GenerationMetrics | None = None
    ) -> None:
        self.name = name
        self._metrics = metrics if metrics is not None else GenerationMetrics()
        self._max_size = max_size
        self._max_wait_s = max_wait_s
        self._max_queued = max_queued
        self._batch_s = self.FIRST_BATCH_S
        self._queue: list[_Request] = []
        self._changed = threading.Condition()
        self._closed = False
        self._log_context = structlog.contextvars.get_contextvars()  # the service name, for this thread's lines too
        self._thread = threading.Thread(target=self._run, name=f"generate-{name}", daemon=True)
        self._thread.start()

    def submit(self, served: ServedModel, params: SamplingParams, sink: Ticket) -> None:
        self.submit_all(served, [(params, sink)])

    def submit_all(self, served: ServedModel, requests: Sequence[tuple[SamplingParams, Ticket]]) -> None:
        """Queue the requests of one call, all or none: `QueueFull` when they do not fit."""
        with self._changed:
            if self._closed:
                raise WorkerClosed(f"the generation worker of {self.name} has stopped")
            queued = len(self._queue)
            if not admits(queued, len(requests), self._max_queued):
                raise QueueFull(self.name, queued, retry_after_s(queued, self._max_size, self._batch_s))
            self._queue.extend(_Request(served, params, sink) for params, sink in requests)
            self._metrics.queue_length.labels(self.name, served.version).inc(len(requests))
            self._changed.notify()

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking requests, fail the queued ones, let the running batch finish."""
        with self._changed:
            self._closed = True
            queued, self._queue = self._queue, []
            self._changed.notify()
        for request in queued:
            self._metrics.queue_length.labels(self.name, request.served.version).dec()
            request.sink.failed(WorkerClosed("the API is shutting down"))
        self._thread.join(timeout)

    def _run(self) -> None:
        structlog.contextvars.bind_contextvars(**self._log_context)
        while self._run_next_batch():
            pass

    def _run_next_batch(self) -> bool:
        # A function per batch: its requests (and the versions they hold) are released when it returns.
        batch = self._next_batch()
        if batch is None:
            return False
        live = [request for request in batch if not request.sink.cancelled]
        if live:
            self._generate(live[0].served, live)
        return True

    def _next_batch(self) -> list[_Request] | None:
        with self._changed:
            while True:
                if self._closed:
                    return None
                if self._queue:
                    keys = [request.key for request in self._queue]
                    waited = time.monotonic() - self._queue[0].arrived
                    wait = seconds_to_wait(keys, waited, self._max_size, self._max_wait_s)
                    if wait <= 0:
                        chosen = set(take_batch(keys, self._max_size))
                        batch = [request for index, request in enumerate(self._queue) if index in chosen]
                        self._queue = [request for index, request in enumerate(self._queue) if index not in chosen]
                        # A batch holds one version (its key): it leaves that version's queue.
                        self._metrics.queue_length.labels(self.name, batch[0].served.version).dec(len(batch))
                        return batch
                    self._changed.wait(wait)
                else:
                    self._changed.wait()

    def _generate(self, served: ServedModel, requests: list[_Request]) -> None:
        labels = (self.name, served.version)
        rows, sinks = [], []
        for request in requests:
            try:
                sink = _MeteredSink(request.sink, request.arrived, self._metrics.time_to_first_token.labels(*labels))
                rows.append(Row(request.params, encode(served, request.params), sink))
                sinks.append(sink)
            except PromptTooLong as exc:
                request.sink.failed(exc)
            except Exception as exc:
                log.exception("generate.encode_failed", model_name=self.name, version=served.version)
                request.sink.failed(exc)
        lengths = [(len(row.prompt_ids), row.params.max_new_tokens) for row in rows]
        for part in split_to_fit(lengths, context_length(served)):
            batch = [rows[index] for index in part]
            started = time.perf_counter()
            try:
                run_batch(served, batch)
            except Exception:
                log.exception("generate.batch_failed", model_name=self.name, version=served.version, rows=len(batch))
                continue
            finally:
                took = time.perf_counter() - started
                self._batch_s += self.BATCH_S_WEIGHT * (took - self._batch_s)
            tokens = sum(sinks[index].tokens for index in part)
            self._metrics.batch_size.labels(*labels).observe(len(batch))
            self._metrics.tokens.labels(*labels).inc(tokens)
            if took > 0:
                self._metrics.tokens_per_second.labels(*labels).observe(tokens / took)
            log.debug(
                "generate.batch",
                model_name=self.name,
                version=served.version,
                rows=len(batch),
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )


class _MeteredSink:
    """A request's sink that times its first text (from its arrival) and counts its tokens for the metrics."""

    def __init__(self, sink: RowSink, arrived: float, time_to_first_token: Histogram) -> None:
        self._sink = sink
        self._arrived = arrived
        self._time_to_first_token: Histogram | None = time_to_first_token  # None once observed
        self.tokens = 0

    @property
    def cancelled(self) -> bool:
        return self._sink.cancelled

    def started(self, prompt_tokens: int) -> None:
        self._sink.started(prompt_tokens)

    def delta(self, text: str) -> None:
        self._first_text()
        self._sink.delta(text)

    def finished(self, completion: Completion) -> None:
        self._first_text()
        self.tokens = completion.completion_tokens
        self._sink.finished(completion)

    def failed(self, error: Exception) -> None:
        self._sink.failed(error)

    def _first_text(self) -> None:
        if self._time_to_first_token is not None:
            self._time_to_first_token.observe(time.monotonic() - self._arrived)
            self._time_to_first_token = None


class Batcher:
    """The batch workers of this replica, one per model name, started on first use."""

    def __init__(self, settings: Settings, metrics: GenerationMetrics | None = None) -> None:
        self._metrics = metrics if metrics is not None else GenerationMetrics()
        self._max_size = settings.batch_max_size
        self._max_wait_s = settings.batch_max_wait_ms / 1000
        self._max_queued = settings.generate_queue_max
        self._workers: dict[str, BatchWorker] = {}
        self._lock = threading.Lock()

    def submit(self, model_name: str, served: ServedModel, params: SamplingParams) -> Ticket:
        """Queue one request (call it on the event loop); its events arrive on the returned ticket.

        Raises `QueueFull` when the model's queue has no room.
        """
        return self.submit_all(model_name, served, [params])[0]

    def submit_all(self, model_name: str, served: ServedModel, params: Sequence[SamplingParams]) -> list[Ticket]:
        """Queue the requests of one call together (all or none, `QueueFull`), so they can share batches."""
        loop = asyncio.get_running_loop()
        tickets = [Ticket(loop) for _ in params]
        self._worker(model_name).submit_all(served, list(zip(params, tickets)))
        return tickets

    def close(self) -> None:
        with self._lock:
            workers, self._workers = list(self._workers.values()), {}
        for worker in workers:
            worker.close()

    def _worker(self, model_name: str) -> BatchWorker:
        with self._lock:
            if model_name not in self._workers:
                self._workers[model_name] = BatchWorker(
                    model_name, self._max_size, self._max_wait_s, self._max_queued, self._metrics
                )
            return self._workers[model_name]


@dataclass(frozen=True)
class Started:
    prompt_tokens: int


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class _Failed:
    error: Exception


Event = Started | Delta | Completion


async def completion_of(events: AsyncIterator[Event]) -> Completion:
    """The Completion a request's events end with (the deltas before it are dropped)."""
    async for event in events:
        if isinstance(event, Completion):
            return event
    raise AssertionError("a request's events end with its completion")


class Ticket:
    """One request's side of a batch: the worker thread reports to it, the event loop reads from it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._events: asyncio.Queue[Event | _Failed] = asyncio.Queue()
        self._cancelled = False
        self._finished = False

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Nobody waits for the rest (the client left): the row stops at its next token."""
        self._cancelled = True

    async def events(self) -> AsyncIterator[Event]:
        """Started, then deltas, then the Completion; raises what failed the request. Leaving early cancels it."""
        try:
            while True:
                event = await self._events.get()
                if isinstance(event, _Failed):
                    self._finished = True
                    raise event.error
                yield event
                if isinstance(event, Completion):
                    self._finished = True
                    return
        finally:
            if not self._finished:
                self.cancel()

    async def result(self) -> Completion:
        return await completion_of(self.events())

    # The RowSink side, called from the worker thread.

    def started(self, prompt_tokens: int) -> None:
        self._put(Started(prompt_tokens))

    def delta(self, text: str) -> None:
        self._put(Delta(text))

    def finished(self, completion: Completion) -> None:
        self._put(completion)

    def failed(self, error: Exception) -> None:
        self._put(_Failed(error))

    def _put(self, event: Event | _Failed) -> None:
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:  # the loop has closed: nobody is left to read this request's events
            self._cancelled = True
