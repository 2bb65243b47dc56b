"""Label bridge benchmark: CPU while idle and under one label a second, and label-to-event latency; prints figures.

    .venv/bin/python bench/label_bridge.py [--sizes 100,1000,10000] [--window-s 30] [--old-rev REV]

Needs the services (`ctrlgpt services up`: Kafka, PostgreSQL, doccano, Kafka Connect). In one run:

1. makes a sentiment project of its own and, for each size, brings it to that many labelled
   examples straight through doccano's database (SQL, in one statement: the REST API would
   take longer than the measurement);
2. moves a consumer group of its own to the end of the change topics and starts
   `ctrlgpt label-bridge` on that group (the bulk insert is history it need not replay: what
   is measured is the cost of following doccano, not of catching up);
3. idle: CPU of the bridge, doccano (with its workers), PostgreSQL (every backend) and Kafka
   Connect over `window-s`, psutil, in % of one core;
4. one label a second through doccano's REST API for `window-s`: the same CPU, and the time
   from each label's POST to its `LabelRecorded` on Kafka (p50, p99);
5. with `--old-rev`, the polling bridge of that git revision (`consumers/doccano_labels.py`
   before CDC, e.g. 6296843) idle at the same size, for reference. It publishes every label
   of the project on its first poll: run it on a stack whose trainer does not matter.

The project is deleted at the end, the new bridge running, so it publishes the deletions of
the labels it published.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
from confluent_kafka import Consumer, TopicPartition

from bench.machine import describe
from bench.report import Report
from consumers.doccano_client import (
    ClassificationProject,
    DoccanoClient,
    ensure_sentiment_project,
)
from consumers.label_snapshots import annotation_label_id
from ctrlgpt import secrets
from ctrlgpt.settings import REPO_ROOT, Settings
from deploy import processes
from deploy.postgres import server as postgres
from streams import topics


def service_leaders(settings: Settings) -> dict[str, psutil.Process]:
    """Each service's first process: the leader of its process group."""
    leaders = {}
    for name in ("doccano", "postgres", "connect"):
        pid = processes.running_pid(settings, name)
        if pid is None:
            raise SystemExit(f"{name} is not running: `ctrlgpt services up` first")
        leaders[name] = psutil.Process(pid)
    return leaders


def _group_cpu_s(leader: psutil.Process) -> float:
    """CPU seconds of the leader's process group so far: every live member, plus the children the
    leader has reaped (PostgreSQL starts a backend per connection, doccano one per request)."""
    group, total = os.getpgid(leader.pid), 0.0
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == group:
                cpu = process.cpu_times()
                total += cpu.user + cpu.system
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    cpu = leader.cpu_times()
    return total + cpu.children_user + cpu.children_system


def cpu_percent(leaders: dict[str, psutil.Process], window_s: float) -> dict[str, float]:
    """% of one core each process group used over `window_s`."""
    before, began = {name: _group_cpu_s(p) for name, p in leaders.items()}, time.monotonic()
    time.sleep(window_s)
    after, elapsed = {name: _group_cpu_s(p) for name, p in leaders.items()}, time.monotonic() - began
    return {name: 100 * (after[name] - before[name]) / elapsed for name in leaders}


def fill(settings: Settings, project: ClassificationProject, size: int, user_id: int) -> None:
    """Bring the project to `size` labelled examples, in SQL (one transaction)."""
    have = int(
        postgres.psql(
            settings,
            f"SELECT count(*) FROM examples_example WHERE project_id = {project.id};",
            database=settings.doccano_database,
        )
    )
    missing = size - have
    if missing <= 0:
        return
    label = project.label_ids["positive"]
    postgres.psql(
        settings,
        f"""
        WITH made AS (
            INSERT INTO examples_example (meta, filename, text, created_at, updated_at, project_id, uuid, upload_name, score)
            SELECT jsonb_build_object('url', 'https://bench.test/' || n), '', 'Bench passage number ' || n || '.',
                   now(), now(), {project.id}, gen_random_uuid(), '', 100
            FROM generate_series({have + 1}, {size}) AS n
            RETURNING id
        )
        INSERT INTO labels_category (prob, manual, created_at, updated_at, example_id, label_id, user_id, uuid)
        SELECT 0, false, now(), now(), id, {label}, {user_id}, gen_random_uuid() FROM made;
        """,
        database=settings.doccano_database,
    )


def _change_ends(consumer: Consumer, settings: Settings) -> list[TopicPartition]:
    ends = []
    for topic in topics.DOCCANO_CHANGE_TABLES:
        name = topics.doccano_change_topic(settings.cdc_topic_prefix, topic).name
        for partition in consumer.list_topics(name, timeout=10).topics[name].partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=10)
            ends.append(TopicPartition(name, partition, high))
    return ends


def skip_history(settings: Settings, quiet_s: float = 5.0) -> None:
    """Once Debezium has streamed the bulk insert (the change topics stop growing), commit the
    bench group's offsets at their ends."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": settings.label_bridge_group})
    ends = _change_ends(consumer, settings)
    while True:
        time.sleep(quiet_s)
        now = _change_ends(consumer, settings)
        if [tp.offset for tp in now] == [tp.offset for tp in ends]:
            break
        ends = now
    consumer.commit(offsets=ends, asynchronous=False)
    consumer.close()


OVERRIDDEN = ("doccano_project", "doccano_expansion_project", "doccano_comparison_project", "label_bridge_group")


def bridge_command(settings: Settings) -> list[str]:
    command = [sys.executable, "-m", "ctrlgpt.cli"]
    for name in OVERRIDDEN:
        command += ["--set", f"{name}={getattr(settings, name)}"]
    return [*command, "label-bridge"]


def old_bridge_command(settings: Settings, revision: str, directory: Path) -> list[str]:
    """The polling bridge of `revision`, as a module of its own beside today's code."""
    source = subprocess.run(
        ["git", "show", f"{revision}:consumers/doccano_labels.py"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (directory / "polling_label_bridge.py").write_text(source)
    overrides = [f"{name}={getattr(settings, name)}" for name in OVERRIDDEN[:3]]
    # Its poll interval setting (2 s) is gone from today's settings: a subclass gives it back.
    code = (
        f"import sys; sys.path.insert(0, {str(directory)!r}); import polling_label_bridge as old; "
        f"from ctrlgpt.settings import Settings\n"
        f"class PollingSettings(Settings):\n    doccano_poll_seconds: float = 2.0\n"
        f"old.main(PollingSettings().with_overrides({overrides!r} + [{f'data_dir={directory}'!r}]), None)"
    )
    return [sys.executable, "-c", code]


@contextmanager
def bridge_running(command: list[str], log_path: Path) -> Iterator[psutil.Process]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with log_path.open("ab") as log:
        # A session of its own: its CPU is measured by process group, apart from the bench's.
        child = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        time.sleep(8)  # start-up (transactions, state, group join) is not what is measured
        if child.poll() is not None:
            raise SystemExit(f"the bridge exited: see {log_path}")
        yield psutil.Process(child.pid)
    finally:
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:  # the old bridge checks for a stop only between polls
            child.kill()
            child.wait()


class EventWatcher:
    """Records when each label id's first event arrives on the labels topic."""

    def __init__(self, settings: Settings) -> None:
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "group.id": f"bench-{uuid.uuid4().hex}",
                "auto.offset.reset": "latest",
            }
        )
        self._consumer.subscribe([topics.LABELS.name])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self._consumer.poll(0.1)
            if msg is not None and not msg.error():
                self.seen.setdefault(topics.LABELS.decode(msg.value()).label_id, time.monotonic())

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


def labelling(
    doccano: DoccanoClient, project: ClassificationProject, watcher: EventWatcher, window_s: float
) -> list[float]:
    """One label a second for `window_s`; the latencies (s) of those whose event came."""
    sent: dict[str, float] = {}
    began = time.monotonic()
    while time.monotonic() - began < window_s:
        tick = time.monotonic()
        example = doccano.create_example(project.id, f"A live passage {uuid.uuid4().hex}.", {})
        posted = time.monotonic()
        annotation = doccano.add_category(project.id, example["id"], project.label_ids["negative"])
        sent[annotation_label_id(project.id, example["id"], annotation["id"])] = posted
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(label_id not in watcher.seen for label_id in sent):
        time.sleep(0.2)
    return [watcher.seen[label_id] - posted for label_id, posted in sent.items() if label_id in watcher.seen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--window-s", type=float, default=30.0)
    parser.add_argument(
        "--old-rev", default=None, help="git revision whose polling bridge is measured idle, for reference"
    )
    args = parser.parse_args()
    unique = uuid.uuid4().hex[:8]
    settings = Settings().with_overrides(
        [
            f"doccano_project=bench labels {unique}",
            f"doccano_expansion_project=bench expansions {unique}",
            f"doccano_comparison_project=bench comparisons {unique}",
            f"label_bridge_group=bench-label-bridge-{unique}",
        ]
    )
    print(f"machine: {describe()}")
    report = Report()
    doccano = DoccanoClient(
        settings.doccano_url, settings.doccano_username, secrets.load_or_create(settings.secrets_file).doccano_password
    )
    doccano.login()
    project = ensure_sentiment_project(doccano, settings.doccano_project)
    admin_id = next(i for i, name in doccano.usernames().items() if name == settings.doccano_username)
    workdir = Path(tempfile.mkdtemp(prefix="bench-label-bridge-"))
    log_path = workdir / "bridge.log"
    print(f"bridge log: {log_path}")
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            fill(settings, project, size, admin_id)
            skip_history(settings)
            alone = cpu_percent(service_leaders(settings), args.window_s)
            report.add(
                f"{size} labelled, no bridge: CPU % of one core",
                _split(alone),
                **{f"alone_{size}": sum(alone.values())},
            )
            with bridge_running(bridge_command(settings), log_path) as bridge:
                groups = {"bridge": bridge, **service_leaders(settings)}
                idle = cpu_percent(groups, args.window_s)
                report.add(
                    f"{size} labelled, idle: CPU % of one core", _split(idle), **{f"idle_{size}": sum(idle.values())}
                )
                watcher = EventWatcher(settings)
                time.sleep(2)
                measuring = threading.Thread(target=lambda: busy.update(cpu_percent(groups, args.window_s)))
                busy: dict[str, float] = {}
                measuring.start()
                latencies = labelling(doccano, project, watcher, args.window_s)
                measuring.join()
                watcher.close()
                report.add(
                    f"{size} labelled, 1 label/s: CPU % of one core",
                    _split(busy),
                    **{f"busy_{size}": sum(busy.values())},
                )
                p50, p99 = (
                    statistics.median(latencies),
                    statistics.quantiles(latencies, n=100)[98] if len(latencies) > 1 else latencies[0],
                )
                report.add(
                    f"{size} labelled, label-to-event latency",
                    f"p50 {p50:.2f} s, p99 {p99:.2f} s ({len(latencies)} labels)",
                    **{f"p50_{size}": p50, f"p99_{size}": p99},
                )
            if args.old_rev:
                # The secrets file is the stack's; the old bridge's cursors go to the bench's directory.
                (workdir / "secrets.json").write_bytes(settings.secrets_file.read_bytes())
                with bridge_running(old_bridge_command(settings, args.old_rev, workdir), log_path) as old:
                    idle_old = cpu_percent({"bridge": old, **service_leaders(settings)}, args.window_s)
                report.add(
                    f"{size} labelled, old polling bridge idle: CPU % of one core",
                    _split(idle_old),
                    **{f"old_idle_{size}": sum(idle_old.values())},
                )
    finally:
        with bridge_running(bridge_command(settings), log_path):
            for name in OVERRIDDEN[:3]:  # the bridge made the other two projects
                made = doccano.find_project(getattr(settings, name))
                if made is not None:
                    doccano.delete_project(made["id"])
            time.sleep(10)  # the deletions' changes reach the bridge, which withdraws its labels
        doccano.close()
    print()
    print(f"Machine: {describe()}")
    print(report.table())


def _split(cpu: dict[str, float]) -> str:
    return f"{sum(cpu.values()):.1f} in all (" + ", ".join(f"{name} {value:.1f}" for name, value in cpu.items()) + ")"


if __name__ == "__main__":
    main()
