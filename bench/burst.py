"""Back-pressure benchmark: a burst of generate requests far over the queue bound; prints figures.

    .venv/bin/python bench/burst.py [--requests 1000] [--max-new-tokens 32] [--queue-max 64]

The API runs as `ctrlgpt api` runs it (uvicorn through api/server.py, settings from the
environment plus `--queue-max`) in a child process, serving the bootstrapped version of
bench/serving_throughput.py. All requests are sent at once from an asyncio client; the
figures are how many were answered 200 and 429, how long each kind took, the
Retry-After values given, and whether `/health` and a later request answer after the
burst. Before the queue was bounded, a burst of 1,000 was seen to wait 22 s.

A first burst of as many `GET /health` gives the floor: what opening that many
connections and answering a request that does no work costs on this machine (client and
server share its cores), so that a 429's latency can be read against it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import torch
from serving_throughput import (
    PROMPTS,
    VERSION,
    free_port,
    wait_for_health,
    write_version,
)

from api.serving.model_loader import load_version
from ctrlgpt.logs import configure
from ctrlgpt.settings import Settings
from models import devices


def serve(version_dir: Path, port: int, queue_max: int) -> None:
    """The child process: the API on loopback serving `version_dir` as `ctrlgpt api` serves."""
    import uvicorn

    from api.main import create_app
    from api.server import server_config
    from api.serving.served_model import ModelHolder

    torch.set_num_threads(1)
    configure("api-bench", "WARNING")
    settings = Settings(
        data_dir=version_dir.parent / "data", api_host="127.0.0.1", api_port=port, generate_queue_max=queue_max
    )
    holder = ModelHolder()
    holder.swap(load_version(version_dir, None, device=devices.of(settings), expected_version=VERSION))
    app = create_app(settings, holder=holder, follow_updates=False, monitor_kafka=False)
    uvicorn.Server(server_config(settings, app)).run()


async def burst(url: str, requests: int, max_new_tokens: int | None) -> list[tuple[int, float, str | None]]:
    """(status, seconds, Retry-After) of each request, all sent at once: generate requests, or with
    `max_new_tokens` None `GET /health`."""
    limits = httpx.Limits(max_connections=requests, max_keepalive_connections=requests)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def one(index: int) -> tuple[int, float, str | None]:
            started = time.perf_counter()
            body = {"prompt": PROMPTS[index % len(PROMPTS)], "max_new_tokens": max_new_tokens, "top_k": 50}
            try:
                if max_new_tokens is None:
                    answer = await client.get("/health")
                else:
                    answer = await client.post("/v1/generate", json=body)
            except httpx.HTTPError as exc:
                return -1, time.perf_counter() - started, type(exc).__name__
            return answer.status_code, time.perf_counter() - started, answer.headers.get("retry-after")

        return list(await asyncio.gather(*(one(index) for index in range(requests))))


def _quantiles(seconds: list[float]) -> str:
    if not seconds:
        return "none"
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"p50 {statistics.median(ordered):.2f} s, p99 {p99:.2f} s, max {ordered[-1]:.2f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="requests in the burst (default 1000)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="tokens each request generates (default 32)")
    parser.add_argument("--queue-max", type=int, default=Settings().generate_queue_max, help="generate_queue_max")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.port, args.queue_max)
        return 0

    configure("bench", "WARNING")
    with tempfile.TemporaryDirectory(prefix="ctrlgpt-burst-") as root:
        version_dir = write_version(Path(root))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                str(version_dir),
                "--port",
                str(port),
                "--queue-max",
                str(args.queue_max),
            ]
        )
        try:
            wait_for_health(url, server)
            print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
            print(
                f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; burst of {args.requests} POST /v1/generate, "
                f"{args.max_new_tokens} new tokens each; generate_queue_max {args.queue_max}"
            )
            floor = asyncio.run(burst(url, args.requests, None))
            started = time.perf_counter()
            answers = asyncio.run(burst(url, args.requests, args.max_new_tokens))
            seconds = time.perf_counter() - started
            health = httpx.get(f"{url}/health", timeout=30).status_code
            later = httpx.post(f"{url}/v1/generate", json={"prompt": PROMPTS[0], "max_new_tokens": 4}, timeout=30)
        finally:
            server.terminate()
            server.wait(30)
    print(f"floor, {args.requests} GET /health at once: {_quantiles([s for _, s, _ in floor])}")
    statuses = Counter(status for status, _, _ in answers)
    retry_after = Counter(after for status, _, after in answers if status == 429)
    print(f"answers: {dict(sorted(statuses.items()))} (-1: no answer) in {seconds:.1f} s")
    print(f"200 answered in: {_quantiles([s for status, s, _ in answers if status == 200])}")
    print(f"429 answered in: {_quantiles([s for status, s, _ in answers if status == 429])}")
    print(f"Retry-After given (s: count): {dict(sorted(retry_after.items(), key=lambda item: int(item[0])))}")
    print(f"after the burst: /health {health}, a generate request {later.status_code}")
    return 0 if set(statuses) <= {200, 429} and health == 200 and later.status_code == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
