"""Hot-swap benchmark: generate requests keep coming while model versions are swapped in; prints figures.

    .venv/bin/python bench/hot_swap.py [--updates 10] [--concurrency 8] [--baseline-s 20] [--max-new-tokens 16]

Needs Kafka (`ctrlgpt services up`). In one run:

1. writes `updates + 1` real version directories (a bootstrapped tokenizer, a GPT-2 of the
   demo's shape and a reward model, safetensors, checksummed manifest) in the model registry of a
   temporary data directory, the replica's own (its store; its secrets sign the announcements);
2. starts `ctrlgpt api` on a free loopback port (its own replica id and a policy name of its
   own, so the demo's API never sees these versions) and announces the first version;
3. a load generator sends `/v1/generate` requests from `concurrency` clients for
   `baseline-s` seconds (latency before swaps), then goes on while `updates` promotions are
   published one after the other on the model-updates topic (latency during swaps); each
   promotion waits until the API serves it (time from the event to serving);
4. prints requests sent and failed, p50/p99 latency before and during swaps, event-to-serving
   times and the versions that answered; the test model name is retired with a tombstone
   and the versions are deleted (the API's log stays, its path is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification

from ctrlgpt.settings import REPO_ROOT, Settings
from models.announcements import model_update, signing_key
from models.layout import policy_dir, reward_dir
from models.manifest import Manifest, read_manifest, write_manifest
from models.store import store_for
from streams import bus, topics
from trainer.bootstrap import tiny_gpt2, train_tokenizer

CORPUS = [
    "The harbor was calm at dawn and the boats went out one by one.",
    "A sunny day in the park makes everyone smile and stay a while.",
    "The train was late again and the platform was cold and grey.",
    "Good food and good friends make a great evening by the sea.",
    "Storms broke the old pier, and the town rebuilt it in a year.",
] * 20
PROMPTS = ["The harbor", "A sunny day", "The train", "Good food", "Storms"]


@dataclass(frozen=True)
class Version:
    version: str
    path: Path
    manifest_sha256: str
    manifest: Manifest


@dataclass
class Load:
    """What the load generator saw: (start time, latency s, HTTP status or 0 for a transport error, version)."""

    samples: list[tuple[float, float, int, str]] = field(default_factory=list)
    stop: bool = False


def write_versions(registry: Path, model_name: str, target: str, count: int) -> list[Version]:
    tokenizer = train_tokenizer(CORPUS)
    versions = []
    for number in range(count):
        name = f"v{number + 1:04d}-bench"
        directory = registry / name
        torch.manual_seed(number)
        policy = tiny_gpt2(tokenizer)
        policy.save_pretrained(policy_dir(directory))
        tokenizer.save_pretrained(policy_dir(directory))
        config = policy.config
        reward = GPT2ForSequenceClassification(
            GPT2Config(
                vocab_size=config.vocab_size,
                n_positions=config.n_positions,
                n_embd=config.n_embd,
                n_layer=config.n_layer,
                n_head=config.n_head,
                num_labels=1,
                pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.eos_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        )
        reward.save_pretrained(reward_dir(directory))
        tokenizer.save_pretrained(reward_dir(directory))
        manifest = Manifest(
            name=model_name,
            version=name,
            parent_version=versions[-1].version if versions else None,
            base_model="bootstrap",
            target_sentiment=target,
            status="promoted",
        )
        sha = write_manifest(directory, manifest)
        versions.append(Version(name, directory, sha, read_manifest(directory)))  # as written: with its checksums
    return versions


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_api(settings: Settings, log_path: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "CTRLGPT_DATA_DIR": str(settings.data_dir),
        "CTRLGPT_API_PORT": str(settings.api_port),
        "CTRLGPT_API_REPLICA_ID": settings.api_replica_id or "",
        "CTRLGPT_POLICY_NAME": settings.policy_name,
        "CTRLGPT_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
    }
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [str(REPO_ROOT / ".venv" / "bin" / "ctrlgpt"), "api"], env=env, stdout=log, stderr=subprocess.STDOUT
        )


async def serving(client: httpx.AsyncClient) -> str | None:
    try:
        return (await client.get("/health")).json().get("model_version")
    except httpx.HTTPError:
        return None


async def wait_serving(client: httpx.AsyncClient, version: str, timeout: float, api: subprocess.Popen) -> float:
    """Poll /health every 20 ms until it names `version`; returns when it first did."""
    started = time.perf_counter()
    while await serving(client) != version:
        if api.poll() is not None:
            raise RuntimeError(f"the API exited with {api.returncode}")
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"the API did not serve {version} within {timeout}s")
        await asyncio.sleep(0.02)
    return time.perf_counter()


async def client_loop(client: httpx.AsyncClient, load: Load, worker: int, max_new_tokens: int) -> None:
    sent = 0
    while not load.stop:
        body = {"prompt": PROMPTS[(worker + sent) % len(PROMPTS)], "max_new_tokens": max_new_tokens}
        started = time.perf_counter()
        try:
            response = await client.post("/v1/generate", json=body)
            status = response.status_code
            version = response.json().get("model_version", "") if status == 200 else ""
        except httpx.HTTPError:
            status, version = 0, ""
        load.samples.append((started, time.perf_counter() - started, status, version))
        sent += 1


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(args: argparse.Namespace) -> int:
    base = Settings()
    run_id = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix="ctrlgpt-hot-swap-"))
    # The replica's own data directory: its model registry (the store it loads from) and its signing key.
    settings = base.model_copy(
        update={
            "api_port": free_port(),
            "api_replica_id": f"bench-{run_id}",
            "policy_name": f"bench-policy-{run_id}",
            "data_dir": work,
        }
    )
    model_name = settings.policy_for(settings.target_sentiment)
    bus.ensure_topics(settings, [topics.MODEL_UPDATES, topics.MODEL_LOAD_FAILURES, topics.dead_letter_topic("api")])
    producer = bus.make_producer(settings)
    print(f"writing {args.updates + 1} versions under {work} ...", flush=True)
    versions = write_versions(
        settings.registry_dir / model_name, model_name, settings.target_sentiment, args.updates + 1
    )
    store, key = store_for(settings), signing_key(settings)
    api = start_api(settings, work / "api.log")

    def promote(version: Version) -> float:
        """Publish the promotion; returns when Kafka acknowledged it (the event's time)."""
        uri = store.uri(model_name, version.version)
        record = model_update(uri, version.manifest, version.manifest_sha256, key=key)
        bus.publish(producer, topics.MODEL_UPDATES, record)
        bus.flush_or_raise(producer)
        return time.perf_counter()

    limits = httpx.Limits(max_connections=args.concurrency + 4)
    try:
        async with httpx.AsyncClient(base_url=settings.api_url, timeout=120, limits=limits) as client:
            promote(versions[0])
            await wait_serving(client, versions[0].version, 180, api)
            load = Load()
            workers = [
                asyncio.create_task(client_loop(client, load, i, args.max_new_tokens)) for i in range(args.concurrency)
            ]
            await asyncio.sleep(args.baseline_s)
            swaps_started = time.perf_counter()
            to_serving = []
            for version in versions[1:]:
                published = promote(version)
                to_serving.append(await wait_serving(client, version.version, 180, api) - published)
                await asyncio.sleep(args.pause_s)
            swaps_ended = time.perf_counter()
            load.stop = True
            await asyncio.gather(*workers)
    finally:
        producer.produce(topics.MODEL_UPDATES.name, key=model_name.encode(), value=None)  # retire the test name
        producer.flush(10)
        api.terminate()
        try:
            api.wait(30)
        except subprocess.TimeoutExpired:
            api.kill()
            api.wait()
        shutil.rmtree(work / "models")

    report(args, load, swaps_started, swaps_ended, to_serving, work)
    failed = sum(1 for _, _, status, _ in load.samples if status != 200)
    return 1 if failed else 0


def report(
    args: argparse.Namespace, load: Load, swaps_started: float, swaps_ended: float, to_serving: list[float], work: Path
) -> None:
    ok = [(start, latency) for start, latency, status, _ in load.samples if status == 200]
    before = [latency for start, latency in ok if start < swaps_started]
    during = [latency for start, latency in ok if swaps_started <= start < swaps_ended]
    failed = [(status, version) for _, _, status, version in load.samples if status != 200]
    versions = {version for _, _, status, version in load.samples if status == 200}
    cpu = platform.processor() or platform.machine()
    print()
    print(
        f"machine      {platform.node()}: {os.cpu_count()} CPUs, {cpu}, Python {sys.version.split()[0]}, torch {torch.__version__}"
    )
    print(f"date         {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f}")
    print(
        f"load         {args.concurrency} concurrent clients, /v1/generate with max_new_tokens={args.max_new_tokens}; "
        f"{args.baseline_s:.0f} s before swaps, then {args.updates} promotions {args.pause_s:.1f} s apart"
    )
    print(f"requests     sent {len(load.samples)}, failed {len(failed)}" + (f" {failed[:5]}" if failed else ""))
    print(f"latency      before swaps: {_p50_p99(before)} ({len(before)} requests)")
    print(
        f"             during swaps: {_p50_p99(during)} ({len(during)} requests, {swaps_ended - swaps_started:.1f} s)"
    )
    print(
        f"event->serve median {statistics.median(to_serving) * 1000:.0f} ms, "
        f"max {max(to_serving) * 1000:.0f} ms over {len(to_serving)} swaps"
    )
    print(f"versions     {len(versions)} answered requests")
    print(f"API log      {work / 'api.log'}")


def _p50_p99(latencies: list[float]) -> str:
    return f"p50 {percentile(latencies, 0.5) * 1000:.0f} ms, p99 {percentile(latencies, 0.99) * 1000:.0f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--updates", type=int, default=10, help="promotions published under load (at least 10 for the figures)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients of the load generator")
    parser.add_argument("--baseline-s", type=float, default=20.0, help="seconds of load before the first swap")
    parser.add_argument(
        "--pause-s", type=float, default=1.0, help="seconds of load between one swap served and the next promotion"
    )
    parser.add_argument("--max-new-tokens", type=int, default=16, help="tokens each request generates")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
