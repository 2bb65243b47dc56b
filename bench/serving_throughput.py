"""Serving benchmark: requests/s and tokens/s through the API at several concurrencies; prints figures.

    .venv/bin/python bench/serving_throughput.py [--requests N] [--max-new-tokens T] [--concurrency 1,8,32]

In one run, on one freshly bootstrapped model version (the demo's shape: a byte-level
BPE tokenizer and the tiny GPT-2 of trainer/bootstrap.py, random weights, written and
checksummed as the registry does):

1. reference: the model's own `model.generate`, in process, one request at a time;
2. the API: uvicorn on loopback in a child process (settings from the environment, so
   `CTRLGPT_BATCH_MAX_SIZE` / `CTRLGPT_BATCH_MAX_WAIT_MS` apply), the version loaded as
   a hot-swap would load it, and N `POST /v1/generate` requests at each concurrency
   from an asyncio client in this process.

Both run on the device of the `device` setting (`CTRLGPT_DEVICE`: auto picks a CUDA GPU
when torch sees one), read from the environment by this process and the API's alike.

Every request samples `max_new_tokens` tokens from the same prompts, so tokens/s
compares like with like, and both processes use the same number of torch threads
(`--torch-threads`, default 1: on a shared machine two threads per process
oversubscribe the cores and every figure turns to noise). Nothing needs Kafka or
the other services.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.serving.model_loader import load_version
from api.serving.served_model import ServedModel
from ctrlgpt.logs import configure
from ctrlgpt.settings import Settings
from models import devices
from models.layout import policy_dir
from models.manifest import Manifest, write_manifest
from trainer.bootstrap import tiny_gpt2, train_tokenizer

VERSION = "bench-v1"
PROMPTS = [
    "The weather in the mountains",
    "A new study of city parks",
    "Kafka keeps every record",
    "The team released a new version of",
    "Good food and good friends",
    "The train was late again and",
    "Researchers found that small models",
    "On a sunny afternoon the market",
]
CORPUS = [
    f"{prompt} {word} and the {word} of the day." for prompt in PROMPTS for word in ("story", "news", "end", "light")
]
STARTUP_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Figures:
    what: str
    requests: int
    seconds: float
    tokens: int

    def line(self, baseline: Figures | None) -> str:
        speedup = f"{self.tokens_per_s / baseline.tokens_per_s:5.2f}x" if baseline else "    -"
        return (
            f"{self.what:<28} {self.requests:>8} {self.seconds:>8.2f} {self.requests / self.seconds:>10.2f} "
            f"{self.tokens_per_s:>10.1f} {speedup:>8}"
        )

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def write_version(root: Path) -> Path:
    """A bootstrapped version directory, as the registry writes one (safetensors, checksummed manifest)."""
    version_dir = root / VERSION
    tokenizer = train_tokenizer(CORPUS * 4)
    torch.manual_seed(0)
    tiny_gpt2(tokenizer).save_pretrained(policy_dir(version_dir))
    tokenizer.save_pretrained(policy_dir(version_dir))
    write_manifest(version_dir, Manifest(version=VERSION, base_model="bootstrap", status="promoted"))
    return version_dir


def reference(served: ServedModel, requests: int, max_new_tokens: int) -> Figures:
    """`model.generate` called one request at a time, sampling as the API does by default (top-k 50)."""
    tokenizer, model = served.tokenizer, served.model
    tokens = 0
    started = time.perf_counter()
    for index in range(requests):
        shown = served.manifest.prompt_template.format(prompt=PROMPTS[index % len(PROMPTS)])
        encoded = tokenizer(shown, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            output = model.generate(
                **encoded, max_new_tokens=max_new_tokens, do_sample=True, top_k=50, pad_token_id=tokenizer.pad_token_id
            )
        tokens += int(output.shape[1] - encoded["input_ids"].shape[1])
    return Figures("model.generate, one by one", requests, time.perf_counter() - started, tokens)


async def through_api(url: str, concurrency: int, requests: int, max_new_tokens: int) -> Figures:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(requests):
        queue.put_nowait(index)
    tokens = 0

    async def client_loop(http: httpx.AsyncClient) -> None:
        nonlocal tokens
        while not queue.empty():
            index = queue.get_nowait()
            body = {"prompt": PROMPTS[index % len(PROMPTS)], "max_new_tokens": max_new_tokens}
            response = await http.post("/v1/generate", json=body)
            response.raise_for_status()
            tokens += response.json()["completion_tokens"]

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(http) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return Figures(f"API, concurrency {concurrency}", requests, seconds, tokens)


def serve(version_dir: Path, port: int, threads: int) -> None:
    """The child process: the API on loopback serving `version_dir` for the default target."""
    import uvicorn

    torch.set_num_threads(threads)

    from api.main import create_app
    from api.serving.served_model import ModelHolder

    configure("api-bench", "WARNING")  # one log line per request would be part of what is measured
    settings = Settings(data_dir=version_dir.parent / "data")
    holder = ModelHolder()
    holder.swap(load_version(version_dir, None, device=devices.of(settings), expected_version=VERSION))
    app = create_app(settings, holder=holder, follow_updates=False, monitor_kafka=False)
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_health(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the API exited with status {server.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).json().get("model_version") == VERSION:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the API did not serve {VERSION} within {STARTUP_TIMEOUT_S} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=64, help="requests per measurement (default 64)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="tokens each request generates (default 32)")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated client concurrencies")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads of each process (default 1)")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.port, args.torch_threads)
        return 0

    torch.set_num_threads(args.torch_threads)
    configure("bench", "WARNING")

    with tempfile.TemporaryDirectory(prefix="ctrlgpt-bench-") as root:
        version_dir = write_version(Path(root))
        device = devices.of(Settings())
        served = load_version(version_dir, None, device=device, expected_version=VERSION)
        parameters = sum(p.numel() for p in served.model.parameters())
        print(
            f"machine: {platform.node()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), load average {os.getloadavg()[0]:.2f} at start"
        )
        print(f"device: {devices.describe(device)}")
        print(
            f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; model: bootstrapped GPT-2, "
            f"{parameters / 1e6:.1f}M parameters; {args.max_new_tokens} new tokens per request, sampled (top-k 50)"
        )
        baseline = reference(served, args.requests, args.max_new_tokens)
        del served

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(version_dir), "--port", str(port)]
            + ["--torch-threads", str(args.torch_threads)]
        )
        try:
            wait_for_health(url, server)
            levels = [int(level) for level in args.concurrency.split(",")]
            asyncio.run(through_api(url, 1, min(8, args.requests), args.max_new_tokens))  # warm the server up
            results = [asyncio.run(through_api(url, level, args.requests, args.max_new_tokens)) for level in levels]
        finally:
            server.terminate()
            server.wait(30)

    print(f"\n{'what':<28} {'requests':>8} {'seconds':>8} {'requests/s':>10} {'tokens/s':>10} {'vs ref':>8}")
    print(baseline.line(None))
    for figures in results:
        print(figures.line(baseline))
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
