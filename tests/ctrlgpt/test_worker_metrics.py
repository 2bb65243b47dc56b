"""A worker's own /metrics: served on its port, and a taken port costs the metrics, not the worker."""

from __future__ import annotations

import socket

import httpx

from ctrlgpt import worker_metrics


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_worker_serves_its_figures_on_its_own_port_and_survives_a_taken_one(settings):
    base = free_port() - worker_metrics.PORT_OFFSETS["index-sink"]
    local = settings.model_copy(update={"worker_metrics_port": base})
    assert worker_metrics.port_of(local, "api") is None  # the API has its own /metrics
    assert worker_metrics.port_of(local.model_copy(update={"worker_metrics_port": 0}), "index-sink") is None
    port = worker_metrics.serve(local, "index-sink")
    assert port == base + worker_metrics.PORT_OFFSETS["index-sink"]
    worker_metrics.RECORDS.labels("index").inc(0)  # the series exists from the first scrape
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert 'ctrlgpt_stage_records_total{stage="index"}' in text
    assert worker_metrics.serve(local, "index-sink") is None  # taken now: logged, not raised
