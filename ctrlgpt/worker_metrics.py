"""Each worker's own figures on its own /metrics: what it processed, what failed, what it dead-lettered.

The API exports what Kafka says about the whole pipeline (lag, end offsets: `api.ops.metrics`);
these are what one worker process did, labelled by its stage, so a dashboard tells a slow
crawler from a failing one. Counted where every stage passes (`streams.bus`: the consume loop
and every dead letter; the cleaner and the label bridge in their own loops), served by
prometheus_client's HTTP server on `worker_metrics_port` + the worker's offset below, bound
to `worker_metrics_host`. A port that is taken costs the worker its metrics, not its work.
"""

from __future__ import annotations

import structlog
from prometheus_client import Counter, start_http_server

from ctrlgpt.settings import Settings

__all__ = ["DEAD_LETTERS", "ERRORS", "PORT_OFFSETS", "RECORDS", "port_of", "serve"]

log = structlog.get_logger()

RECORDS = Counter(
    "ctrlgpt_stage_records", "Records a stage took from Kafka and finished (written, or dead-lettered).", ["stage"]
)
ERRORS = Counter(
    "ctrlgpt_stage_errors",
    "Failures a stage met and retried or narrowed down (a service away, a write that raised).",
    ["stage", "error_type"],
)
DEAD_LETTERS = Counter("ctrlgpt_stage_dead_letters", "Records a stage dead-lettered, with the reason.", ["stage"])

# Offsets from `worker_metrics_port`: one port per worker on one machine (the API has its own /metrics).
PORT_OFFSETS: dict[str, int] = {
    "crawler": 1,
    "cleaner": 2,
    "index-sink": 3,
    "doccano-sink": 4,
    "label-bridge": 5,
    "trainer": 6,
}


def port_of(settings: Settings, worker: str) -> int | None:
    """The worker's metrics port; None for a command that is no worker, or when they are off (port 0)."""
    if not settings.worker_metrics_port or worker not in PORT_OFFSETS:
        return None
    return settings.worker_metrics_port + PORT_OFFSETS[worker]


def serve(settings: Settings, worker: str) -> int | None:
    """Start the worker's metrics server in a daemon thread; returns its port (None: not started)."""
    port = port_of(settings, worker)
    if port is None:
        return None
    try:
        start_http_server(port, addr=settings.worker_metrics_host)
    except OSError as exc:  # taken: a second copy of the worker on this host, say
        log.warning("worker_metrics.not_served", worker=worker, port=port, error=str(exc))
        return None
    log.info("worker_metrics.serving", worker=worker, url=f"http://{settings.worker_metrics_host}:{port}/metrics")
    return port
