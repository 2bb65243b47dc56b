"""Continuous batching: requests join and leave the running batch between decoding steps.

Every model name has one worker thread, so generation never runs on the event loop and a
version's model and tokenizer are only ever used by that thread. The thread loops:

1. admit queued requests, oldest first, while fewer than `batch_max_size` rows decode: a
   request joins at once, without waiting for company (a lone user pays no batching tax;
   requests that arrive meanwhile join at the next step);
2. run the prompts of the admitted requests and add them to their version's running batch
   (api/serving/decoding.py), which keeps each row's KV cache, position, sampling and seed;
3. take one decoding step of every running batch: each row gets one token, and a row that
   finished, or whose client left, leaves at once, so a short request never waits for a
   long one.

Versions never share a batch: after a hot-swap the old version's rows finish on it while
the new version's decode beside them, and the old version is freed when its last row
leaves. Beam search, which cannot run a row alone, still runs as one `generate` call over
left-padded compatible requests (api.serving.generation.run_batch), between two steps.

Each worker records its queue, steps, tokens and each request's time to first text in
`GenerationMetrics` (GET /metrics), labelled by model name and version.

Each worker's queue is bounded (`generate_queue_max`): a request that would overflow it
is refused at once with `QueueFull` and an estimate of when to come back (the routes
answer 429 with Retry-After), so a burst is told to wait instead of timing out.

The admission and grouping rules are the pure functions at the top; the thread and the
asyncio side are below them.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from dataclasses import dataclass, field

import structlog
from prometheus_client import Histogram

from api.serving.decoding import RunningBatch
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


def admit(beam_keys: Sequence[Hashable | None], running: int, max_size: int) -> tuple[list[int], list[int]]:
    """Positions in the queue (oldest first) of the requests to start now, in two lists.

    Requests decoded step by step (key None) join the running rows while fewer than
    `max_size` run. A beam-search request (its key: its version and `Decoding`) runs with
    the queued ones of its key, up to `max_size`, in one static batch.
    """
    stepwise = [index for index, key in enumerate(beam_keys) if key is None]
    beams = [index for index, key in enumerate(beam_keys) if key is not None]
    joining = stepwise[: max(0, max_size - running)]
    return joining, [beams[index] for index in take_batch([beam_keys[index] for index in beams], max_size)]


def split_to_fit(lengths: Sequence[tuple[int, int]], context: int) -> list[list[int]]:
    """Split rows (prompt tokens, new tokens), in order, into static batches that fit the context.

    With left padding every row of a static batch runs for the batch's most new tokens, so
    a batch fits when its longest prompt plus its most new tokens fit. Each row fits alone
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


def retry_after_s(queued: int, max_size: int, request_s: float) -> int:
    """Whole seconds until a queue of `queued` requests has drained: `max_size` of them run at a time, each for
    about `request_s`, after the running ones; at least 1."""
    rounds = math.ceil(queued / max_size) + 1
    return max(1, math.ceil(rounds * request_s))


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
    def beam_key(self) -> tuple[ServedModel, Decoding] | None:
        """None for a request decoded step by step; for beam search, what its static batch must share."""
        if self.params.num_beams == 1:
            return None
        # ServedModel compares by identity: versions, even of one name, never share a batch.
        return self.served, decoding_of(self.params)


class BatchWorker:
    """One thread that decodes the requests of one model name, a step at a time, admitting the oldest first."""

    # Until a request has finished, the Retry-After estimate assumes a request takes this long.
    FIRST_REQUEST_S = 1.0
    # How much each finished request's duration moves the running estimate.
    REQUEST_S_WEIGHT = 0.2

    def __init__(self, name: str, max_size: int, max_queued: int, metrics: GenerationMetrics | None = None) -> None:
        self.name = name
        self._metrics = metrics if metrics is not None else GenerationMetrics()
        self._max_size = max_size
        self._max_queued = max_queued
        self._request_s = self.FIRST_REQUEST_S
        self._queue: list[_Request] = []
        self._running: dict[ServedModel, RunningBatch] = {}  # the worker thread's alone
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
                raise QueueFull(self.name, queued, retry_after_s(queued, self._max_size, self._request_s))
            self._queue.extend(_Request(served, params, sink) for params, sink in requests)
            self._metrics.queue_length.labels(self.name, served.version).inc(len(requests))
            self._changed.notify()

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking requests, fail the queued ones, let the running rows finish."""
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
        _gathering.deliveries = deliveries = _Deliveries()
        while (work := self._next_work()) is not None:
            joining, beams = work
            if beams:
                self._generate_beams(beams[0].served, beams)
                deliveries.flush()
            self._join(joining)
            deliveries.flush()  # the new rows' first text, before the step
            self._step()
            deliveries.flush()

    def _next_work(self) -> tuple[list[_Request], list[_Request]] | None:
        """The requests to start now (decoded step by step, beam search); None once closed with no row left."""
        with self._changed:
            while True:
                running = sum(len(batch) for batch in self._running.values())
                if self._queue:
                    joining, beams = admit([request.beam_key for request in self._queue], running, self._max_size)
                    chosen = set(joining) | set(beams)
                    started = [request for index, request in enumerate(self._queue) if index in chosen]
                    self._queue = [request for index, request in enumerate(self._queue) if index not in chosen]
                    for request in started:
                        self._metrics.queue_length.labels(self.name, request.served.version).dec()
                    return [request for request in started if request.beam_key is None], [
                        request for request in started if request.beam_key is not None
                    ]
                if running:
                    return [], []
                if self._closed:
                    return None
                self._changed.wait()

    def _join(self, requests: list[_Request]) -> None:
        """Start the requests: their prompts run and they join their version's running batch."""
        by_version: dict[ServedModel, list[Row]] = {}
        for request in requests:
            if request.sink.cancelled:
                continue
            row = self._row(request)
            if row is not None:
                by_version.setdefault(request.served, []).append(row)
        for served, rows in by_version.items():
            batch = self._running.setdefault(served, RunningBatch(served))
            started = time.perf_counter()
            try:
                batch.join(rows)
            except Exception:
                log.exception("generate.join_failed", model_name=self.name, version=served.version, rows=len(rows))
            self._observe_step(served, len(rows), time.perf_counter() - started)
            if not len(batch):
                del self._running[served]

    def _step(self) -> None:
        """One token for every running row; a version whose last row left is released."""
        for served, batch in list(self._running.items()):
            batch.cancel_left()
            started = time.perf_counter()
            try:
                rows = batch.step()
            except Exception:
                log.exception("generate.step_failed", model_name=self.name, version=served.version)
                rows = 0
            if rows:
                self._observe_step(served, rows, time.perf_counter() - started)
            if not len(batch):
                del self._running[served]

    def _observe_step(self, served: ServedModel, rows: int, took: float) -> None:
        labels = (self.name, served.version)
        self._metrics.batch_size.labels(*labels).observe(rows)
        if took > 0:
            self._metrics.tokens_per_second.labels(*labels).observe(rows / took)

    def _row(self, request: _Request) -> Row | None:
        """The request's row (its prompt encoded, its sink metered), or None when it failed already."""
        sink = _MeteredSink(request.sink, request.arrived, self._metrics, (self.name, request.served.version))
        sink.on_finish = self._finished_after
        try:
            return Row(request.params, encode(request.served, request.params), sink)
        except PromptTooLong as exc:
            request.sink.failed(exc)
        except Exception as exc:
            log.exception("generate.encode_failed", model_name=self.name, version=request.served.version)
            request.sink.failed(exc)
        return None

    def _finished_after(self, seconds: float) -> None:
        self._request_s += self.REQUEST_S_WEIGHT * (seconds - self._request_s)

    def _generate_beams(self, served: ServedModel, requests: list[_Request]) -> None:
        """Beam-search requests of one key, in static batches that fit the context, one `generate` call each."""
        rows = [row for request in requests if not request.sink.cancelled and (row := self._row(request))]
        lengths = [(len(row.prompt_ids), row.params.max_new_tokens) for row in rows]
        for part in split_to_fit(lengths, context_length(served)):
            started = time.perf_counter()
            try:
                run_batch(served, [rows[index] for index in part])
            except Exception:
                log.exception("generate.batch_failed", model_name=self.name, version=served.version, rows=len(part))
            self._observe_step(served, len(part), time.perf_counter() - started)


class _MeteredSink:
    """A request's sink that times its first text (from its arrival) and counts its tokens for the metrics."""

    def __init__(self, sink: RowSink, arrived: float, metrics: GenerationMetrics, labels: tuple[str, str]) -> None:
        self._sink = sink
        self._arrived = arrived
        self._started = time.monotonic()
        self._tokens = metrics.tokens.labels(*labels)
        self._time_to_first_token: Histogram | None = metrics.time_to_first_token.labels(*labels)  # None once seen
        self.on_finish: Callable[[float], None] | None = None  # told how long the request ran

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
        self._tokens.inc(completion.completion_tokens)
        if self.on_finish is not None:
            self.on_finish(time.monotonic() - self._started)
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
        self._max_queued = settings.generate_queue_max
        self._workers: dict[str, BatchWorker] = {}
        self._lock = threading.Lock()

    def submit(self, model_name: str, served: ServedModel, params: SamplingParams) -> Ticket:
        """Queue one request (call it on the event loop); its events arrive on the returned ticket.

        Raises `QueueFull` when the model's queue has no room.
        """
        return self.submit_all(model_name, served, [params])[0]

    def submit_all(self, model_name: str, served: ServedModel, params: Sequence[SamplingParams]) -> list[Ticket]:
        """Queue the requests of one call together (all or none, `QueueFull`), so their prompts run together."""
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
                self._workers[model_name] = BatchWorker(model_name, self._max_size, self._max_queued, self._metrics)
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


class _Deliveries:
    """Ticket events a worker thread gathered during one phase (a join, a step), handed to each event loop in one
    call: one wake-up of the loop per step rather than one per row and token."""

    def __init__(self) -> None:
        self._pending: dict[asyncio.AbstractEventLoop, list[tuple[Ticket, Event | _Failed]]] = {}

    def add(self, ticket: Ticket, event: Event | _Failed) -> None:
        self._pending.setdefault(ticket.loop, []).append((ticket, event))

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for loop, items in pending.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # the loop has closed: nobody is left to read these requests' events
                for ticket, _ in items:
                    ticket.cancel()


def _deliver(items: list[tuple[Ticket, Event | _Failed]]) -> None:
    for ticket, event in items:
        ticket.arrived(event)


# Set in a batch worker's thread: the tickets it reports to gather their events there until the next flush.
_gathering = threading.local()


class Ticket:
    """One request's side of a batch: the worker thread reports to it, the event loop reads from it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._events: asyncio.Queue[Event | _Failed] = asyncio.Queue()
        self._held: Event | _Failed | None = None  # taken from the queue behind deltas that were merged
        self._cancelled = False
        self._finished = False

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Nobody waits for the rest (the client left): the row stops at its next token."""
        self._cancelled = True

    async def events(self) -> AsyncIterator[Event]:
        """Started, then deltas, then the Completion; raises what failed the request. Leaving early cancels it.

        Deltas that queued up while the reader was busy come as one (a slow reader gets fewer, longer deltas)."""
        try:
            while True:
                event = await self._next()
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

    async def _next(self) -> Event | _Failed:
        if self._held is not None:
            event, self._held = self._held, None
        else:
            event = await self._events.get()
        if not isinstance(event, Delta):
            return event
        texts = [event.text]
        while not self._events.empty():
            following = self._events.get_nowait()
            if not isinstance(following, Delta):
                self._held = following
                break
            texts.append(following.text)
        return Delta("".join(texts))

    def arrived(self, event: Event | _Failed) -> None:
        """On the event loop: an event from the worker thread."""
        self._events.put_nowait(event)

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
        deliveries: _Deliveries | None = getattr(_gathering, "deliveries", None)
        if deliveries is not None:
            deliveries.add(self, event)
            return
        try:
            self.loop.call_soon_threadsafe(self.arrived, event)
        except RuntimeError:  # the loop has closed: nobody is left to read this request's events
            self._cancelled = True
