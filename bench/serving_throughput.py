"""Serving benchmark: the API's tokens/s, latency and time to first text against an ideal batch; prints tables.

    .venv/bin/python bench/serving_throughput.py [--requests N] [--max-new-tokens T] [--concurrency 1,8,32]
                                                 [--shape tiny|gpt2]

In one run, on one freshly bootstrapped model version (the demo's shape: a byte-level
BPE tokenizer and the tiny GPT-2 of trainer/bootstrap.py, random weights, written and
checksummed as the registry does; `--shape gpt2`: GPT-2 small's 12 layers of 768):

1. references, in process: the model's own `model.generate` one request at a time, and
   on static left-padded batches of 8 and of 32 prompts (the best a batcher can do when
   every request asks for as many tokens);
2. the API: uvicorn on loopback in a child process (settings from the environment, so
   the batching settings apply), the version loaded as a hot-swap would load it, and N
   `POST /v1/generate` requests at each concurrency from an asyncio client in this
   process, answered whole (JSON) and then streamed (server-sent events): tokens/s as a
   fraction of each reference, latency and, streamed, time to first text (the first
   `token` event) at p50 and p99;
3. a mixed-length workload (8 to 256 new tokens a request): static batches of 32 waste
   steps on their finished rows, while the API at the highest concurrency should not;
   the 8-token requests' p99 latency there is compared with their latency alone.

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
import json
import math
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
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
from trainer.bootstrap import TinyGPT2, tiny_gpt2, train_tokenizer

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
    """One measurement: the tokens its requests got over its wall time, and each request's latencies."""

    what: str
    seconds: float
    tokens: int
    asked: tuple[int, ...] = ()  # new tokens each request asked for
    latencies: tuple[float, ...] = ()  # seconds from a request's start to its last token, in `asked`'s order
    first_text: tuple[float, ...] = ()  # seconds from a request's start to its first text (streamed)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    def latencies_of(self, asked: int) -> list[float]:
        """The latencies of the requests that asked for `asked` tokens."""
        return [latency for want, latency in zip(self.asked, self.latencies) if want == asked]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 to 100), nearest rank: a value some request really saw; NaN for none."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def mixed_lengths(requests: int, shortest: int = 8, longest: int = 256, seed: int = 0) -> list[int]:
    """New tokens each request of the mixed workload asks for: the powers of two from `shortest` to `longest`,
    equally often, in a seeded shuffle (so a static batch holds short and long requests alike)."""
    sizes = [shortest * 2**power for power in range(int(math.log2(longest // shortest)) + 1)]
    asks = [sizes[index % len(sizes)] for index in range(requests)]
    random.Random(seed).shuffle(asks)
    return asks


def useful_tokens(row: Sequence[int], asked: int, eos_id: int) -> int:
    """Tokens of a static batch's row that its request gets: up to its end of text (counted) and at most `asked`;
    the batch's other steps for that row are wasted work."""
    wanted = list(row[:asked])
    return wanted.index(eos_id) + 1 if eos_id in wanted else len(wanted)


class SseParser:
    """Server-sent events from a stream's lines: `feed` returns (event, data) when a blank line ends one."""

    def __init__(self) -> None:
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        if not line:
            if not self._data:
                return None
            event, data = self._event, "\n".join(self._data)
            self._event, self._data = "message", []
            return event, data
        field_name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field_name == "event":
            self._event = value
        elif field_name == "data":
            self._data.append(value)
        return None


def ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x" if reference > 0 and not math.isnan(value) else "-"


def milliseconds(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.0f}"


def equal_length_row(figures: Figures, one_by_one: Figures, batch_8: Figures, batch_32: Figures) -> str:
    """One line of the equal-length table: tokens/s against the three references, latency and first-text times."""
    speed = figures.tokens_per_s
    return (
        f"| {figures.what} | {speed:.0f} | {ratio(speed, one_by_one.tokens_per_s)} | "
        f"{ratio(speed, batch_8.tokens_per_s)} | {ratio(speed, batch_32.tokens_per_s)} | "
        f"{milliseconds(percentile(figures.latencies, 50))} | {milliseconds(percentile(figures.latencies, 99))} | "
        f"{milliseconds(percentile(figures.first_text, 50))} | {milliseconds(percentile(figures.first_text, 99))} |"
    )


EQUAL_LENGTH_HEADER = (
    "| what | tokens/s | vs one by one | vs static batch 8 | vs static batch 32 | latency p50 ms | latency p99 ms "
    "| first text p50 ms | first text p99 ms |\n|---|---|---|---|---|---|---|---|---|"
)


# The model shapes the benchmark can serve: the demo's bootstrapped one, and GPT-2 small's layers (its
# vocabulary stays the bench tokenizer's), where the arithmetic, not HTTP, dominates a request.
SHAPES = {"tiny": TinyGPT2(), "gpt2": TinyGPT2(n_layer=12, n_embd=768, n_head=12, n_positions=1024)}


def write_version(root: Path, shape: TinyGPT2 = SHAPES["tiny"]) -> Path:
    """A bootstrapped version directory, as the registry writes one (safetensors, checksummed manifest)."""
    version_dir = root / VERSION
    tokenizer = train_tokenizer(CORPUS * 4)
    torch.manual_seed(0)
    tiny_gpt2(tokenizer, shape).save_pretrained(policy_dir(version_dir))
    tokenizer.save_pretrained(policy_dir(version_dir))
    write_manifest(version_dir, Manifest(version=VERSION, base_model="bootstrap", status="promoted"))
    return version_dir


def shown_prompt(served: ServedModel, index: int) -> str:
    return served.manifest.prompt_template.format(prompt=PROMPTS[index % len(PROMPTS)])


def one_by_one(served: ServedModel, requests: int, max_new_tokens: int) -> Figures:
    """`model.generate` called one request at a time, sampling as the API does by default (top-k 50)."""
    return static_batches(served, 1, [max_new_tokens] * requests, "model.generate, one by one")


def static_batches(served: ServedModel, size: int, asks: Sequence[int], what: str | None = None) -> Figures:
    """The model's own `generate` on static left-padded batches of `size` requests, in order: every row of a
    batch runs for the batch's most new tokens (a request's latency is its batch's duration)."""
    tokenizer, model = served.tokenizer, served.model
    tokens, latencies = 0, []
    started = time.perf_counter()
    for first in range(0, len(asks), size):
        chunk = asks[first : first + size]
        encoded = tokenizer(
            [shown_prompt(served, first + offset) for offset in range(len(chunk))],
            return_tensors="pt",
            padding=True,
            padding_side="left",
        ).to(model.device)
        batch_started = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(
                **encoded, max_new_tokens=max(chunk), do_sample=True, top_k=50, pad_token_id=tokenizer.pad_token_id
            )
        latencies += [time.perf_counter() - batch_started] * len(chunk)
        new = output[:, encoded["input_ids"].shape[1] :].tolist()
        tokens += sum(useful_tokens(row, asked, tokenizer.eos_token_id) for row, asked in zip(new, chunk))
    seconds = time.perf_counter() - started
    return Figures(what or f"static batches of {size}", seconds, tokens, tuple(asks), tuple(latencies))


async def one_request(http: httpx.AsyncClient, index: int, asked: int, stream: bool) -> tuple[int, float, float]:
    """One POST /v1/generate: its completion tokens, latency and time to first text (streamed; else NaN)."""
    body = {"prompt": PROMPTS[index % len(PROMPTS)], "max_new_tokens": asked, "stream": stream}
    sent = time.perf_counter()
    if not stream:
        response = await http.post("/v1/generate", json=body)
        response.raise_for_status()
        return response.json()["completion_tokens"], time.perf_counter() - sent, math.nan
    parser, tokens, first_text = SseParser(), 0, math.nan
    async with http.stream("POST", "/v1/generate", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            event = parser.feed(line)
            if event is None:
                continue
            name, data = event
            if name == "token" and math.isnan(first_text):
                first_text = time.perf_counter() - sent
            elif name == "done":
                tokens = json.loads(data)["usage"]["completion_tokens"]
            elif name == "error":
                raise RuntimeError(f"request {index} failed: {data}")
    return tokens, time.perf_counter() - sent, first_text


async def through_api(
    url: str, concurrency: int, asks: Sequence[int], *, stream: bool = False, what: str | None = None
) -> Figures:
    """`asks` requests from `concurrency` clients, each sending its next one when its last has ended."""
    pending = list(enumerate(asks))
    results: dict[int, tuple[int, float, float]] = {}

    async def client_loop(http: httpx.AsyncClient) -> None:
        while pending:
            index, asked = pending.pop(0)
            results[index] = await one_request(http, index, asked, stream)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(http) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    ordered = [results[index] for index in range(len(asks))]
    return Figures(
        what or f"API, concurrency {concurrency}{', streamed' if stream else ''}",
        seconds,
        sum(tokens for tokens, _, _ in ordered),
        tuple(asks),
        tuple(latency for _, latency, _ in ordered),
        tuple(first for _, _, first in ordered),
    )


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
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny", help="model shape (default tiny)")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.port, args.torch_threads)
        return 0

    torch.set_num_threads(args.torch_threads)
    configure("bench", "WARNING")
    equal = [args.max_new_tokens] * args.requests
    mixed = mixed_lengths(args.requests)
    shortest = min(mixed)

    with tempfile.TemporaryDirectory(prefix="ctrlgpt-bench-") as root:
        version_dir = write_version(Path(root), SHAPES[args.shape])
        device = devices.of(Settings())
        served = load_version(version_dir, None, device=device, expected_version=VERSION)
        parameters = sum(p.numel() for p in served.model.parameters())
        print(
            f"machine: {platform.node()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), load average {os.getloadavg()[0]:.2f} at start"
        )
        print(f"device: {devices.describe(device)}")
        print(
            f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; model: bootstrapped GPT-2 ({args.shape} shape), "
            f"{parameters / 1e6:.1f}M parameters; {args.requests} requests a measurement, sampled (top-k 50)"
        )
        static_batches(served, 8, equal[:8])  # warm the kernels up
        one = one_by_one(served, args.requests, args.max_new_tokens)
        batch_8 = static_batches(served, 8, equal)
        batch_32 = static_batches(served, 32, equal)
        mixed_32 = static_batches(served, 32, mixed, "static batches of 32, mixed lengths")
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
            asyncio.run(through_api(url, 1, equal[:8]))  # warm the server up
            results = [
                asyncio.run(through_api(url, level, equal, stream=stream))
                for level in levels
                for stream in (False, True)
            ]
            alone = asyncio.run(through_api(url, 1, [shortest] * 16, what=f"API, {shortest} tokens, alone"))
            mixed_api = asyncio.run(through_api(url, max(levels), mixed, what=f"API, concurrency {max(levels)}, mixed"))
        finally:
            server.terminate()
            server.wait(30)

    print(f"\nequal lengths: {args.max_new_tokens} new tokens a request\n")
    print(EQUAL_LENGTH_HEADER)
    for figures in [one, batch_8, batch_32, *results]:
        print(equal_length_row(figures, one, batch_8, batch_32))
    print(f"\nmixed lengths: {sorted(set(mixed))} new tokens, equally often, shuffled\n")
    print("| what | tokens/s | vs static batches of 32 | short p50 ms | short p99 ms | short p99 vs alone |")
    print("|---|---|---|---|---|---|")
    alone_ms = percentile(alone.latencies, 50)
    for figures in [mixed_32, mixed_api]:
        short = figures.latencies_of(shortest)
        print(
            f"| {figures.what} | {figures.tokens_per_s:.0f} | {ratio(figures.tokens_per_s, mixed_32.tokens_per_s)} | "
            f"{milliseconds(percentile(short, 50))} | {milliseconds(percentile(short, 99))} | "
            f"{ratio(percentile(short, 99), alone_ms)} |"
        )
    print(f"\n{shortest}-token requests alone (API, concurrency 1): p50 {milliseconds(alone_ms)} ms")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
