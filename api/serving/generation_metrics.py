"""Prometheus figures of generation, labelled by model name and version: queue, batches, tokens, first token.

The names follow what LLM servers export (vLLM's waiting requests, batch size, generation
tokens, time to first token), so their dashboards translate: tokens per second over time is
`rate(ctrlgpt_generate_tokens_total[1m])`; each decoding step's own rate is a histogram. The batch
workers (api/serving/batching.py) record them from their threads; prometheus_client's
metrics are thread-safe.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LABELS = ["model_name", "version"]


class GenerationMetrics:
    """The generation figures of one app, in its registry (a fresh one when none is given: a batcher alone)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.queue_length = Gauge(
            "ctrlgpt_generate_queue_length",
            "Requests waiting for a batch (each choice of an OpenAI call is one).",
            LABELS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "ctrlgpt_generate_batch_size",
            "Rows that took a token together: one decoding step, a join's prompt run, or one beam-search generate call.",
            LABELS,
            registry=registry,
            buckets=(1, 2, 4, 8, 16, 32, 64),
        )
        self.tokens = Counter(
            "ctrlgpt_generate_tokens",
            "Tokens generated (end-of-text tokens included); rate() of it is tokens per second.",
            LABELS,
            registry=registry,
        )
        self.tokens_per_second = Histogram(
            "ctrlgpt_generate_batch_tokens_per_second",
            "Tokens per second of each decoding step (or prompt run, or beam-search call): its rows over its duration.",
            LABELS,
            registry=registry,
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
        )
        self.time_to_first_token = Histogram(
            "ctrlgpt_generate_time_to_first_token_seconds",
            "From a request's arrival (its wait in the queue included) to its first text: the first streamed "
            "delta, or the whole answer when no text came earlier.",
            LABELS,
            registry=registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
