"""GET /metrics: Prometheus text format (kafka-exporter names for Kafka figures; see api.ops.metrics)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request) -> Response:
    # A plain `def`: a scrape may wait up to ops_kafka_timeout_s for Kafka, in the threadpool, not the event loop.
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
