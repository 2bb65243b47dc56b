"""`ctrlgpt services up|down|status`: Kafka (one broker or a cluster), Elasticsearch, doccano and the object store
on this machine.

`up` starts what is not running (Kafka first, the others while it boots), waits
until each answers, then creates the registry's missing topics. Running it again
changes nothing. `down` stops them; their data stays under `settings.data_dir`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextvars
import functools
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import structlog

from consumers.doccano_client import (
    DoccanoClient,
    ensure_comparison_project,
    ensure_expansion_project,
    ensure_sentiment_project,
)
from ctrlgpt import secrets
from ctrlgpt.settings import Settings
from deploy import processes
from deploy.connect import worker as connect
from deploy.doccano import server as doccano
from deploy.elasticsearch import node as elasticsearch
from deploy.kafka import broker as kafka
from deploy.objectstore import server as objectstore
from deploy.postgres import server as postgres
from streams import bus

log = structlog.get_logger()


@dataclass(frozen=True)
class Service:
    name: str
    start: Callable[[Settings], int]
    ready: Callable[[Settings], bool]
    url: Callable[[Settings], str]
    address: Callable[[Settings], tuple[str, int]]
    ready_timeout_s: float


def _module_service(module: ModuleType) -> Service:
    return Service(module.NAME, module.start, module.ready, module.url, module.address, module.READY_TIMEOUT_S)


def _kafka_node(node: kafka.Node) -> Service:
    index = node.index
    return Service(
        node.name,
        functools.partial(kafka.start, index=index),
        functools.partial(kafka.ready, index=index),
        functools.partial(kafka.url, index=index),
        functools.partial(kafka.address, index=index),
        kafka.READY_TIMEOUT_S,
    )


def kafka_services(settings: Settings) -> list[Service]:
    """The local Kafka cluster's nodes (`kafka_brokers` of them), each a service of its own."""
    return [_kafka_node(node) for node in kafka.nodes(settings)]


def of(settings: Settings) -> list[Service]:
    """Every service, in the order they start in: Kafka first; PostgreSQL before doccano, which
    migrates onto it; Connect last, its connector reading doccano's tables. The object store needs none of them."""
    return kafka_services(settings) + [
        _module_service(module) for module in (objectstore, postgres, elasticsearch, doccano, connect)
    ]


class ServiceFailed(RuntimeError):
    """A service did not start or did not become ready; the message names its log file."""


def up(settings: Settings) -> None:
    start(settings, of(settings))
    try:
        created = bus.ensure_topics(settings)
    except bus.ServiceUnavailable as exc:
        raise ServiceFailed(
            f"creating the topics failed: {exc}; see {processes.log_file(settings, kafka.NAME)}"
        ) from exc
    log.info("topics.ensured", created=created)
    # Like the topics, the labeling projects are provisioned once here, before the workers
    # that use it start: several of them creating it at once would race.
    password = secrets.load_or_create(settings.secrets_file).doccano_password
    with DoccanoClient(settings.doccano_url, settings.doccano_username, password) as client:
        client.login()
        project = ensure_sentiment_project(client, settings.doccano_project)
        expansion_project_id = ensure_expansion_project(client, settings.doccano_expansion_project)
        comparison_project = ensure_comparison_project(client, settings.doccano_comparison_project)
    log.info("doccano.project_ensured", name=settings.doccano_project, id=project.id)
    log.info("doccano.project_ensured", name=settings.doccano_expansion_project, id=expansion_project_id)
    log.info("doccano.project_ensured", name=settings.doccano_comparison_project, id=comparison_project.id)


def start(settings: Settings, wanted: list[Service]) -> None:
    """Start what is not running among `wanted`, in order, then wait until each answers."""
    began = time.monotonic()
    # Start them all in order, then wait: their boots overlap, Kafka's first (and a cluster's
    # nodes elect their controller only once a majority of them runs).
    pids = {}
    for service in wanted:
        if processes.running_pid(settings, service.name) is None:
            _refuse_taken_port(settings, service)
        try:
            pids[service.name] = service.start(settings)
        except Exception as exc:
            raise ServiceFailed(f"{service.name} could not start: {exc}") from exc
    for service in wanted:
        _wait_ready(settings, service, pids[service.name])
        log.info(
            "service.up",
            name=service.name,
            pid=pids[service.name],
            url=service.url(settings),
            seconds=round(time.monotonic() - began, 1),
        )


def _refuse_taken_port(settings: Settings, service: Service) -> None:
    """Another program on the port would answer the readiness checks in our service's place."""
    host, port = service.address(settings)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        if probe.connect_ex((host, port)) == 0:
            raise ServiceFailed(
                f"{service.name} is not running under this data directory's supervisor, "
                f"yet {host}:{port} is taken by another program: stop it, or point the setting elsewhere"
            )


def _wait_ready(settings: Settings, service: Service, pid: int) -> None:
    log_path = processes.log_file(settings, service.name)

    def answers() -> bool:
        # Asked of supervisord, which reaped it: a dead or zombie process is never waited for.
        process = processes.info(settings, service.name)
        if process is None or process["statename"] not in processes.LIVE_STATES | {"BACKOFF"}:
            state = process["statename"] if process else "gone"
            raise ServiceFailed(f"{service.name} (pid {pid}) exited while starting ({state}); see {log_path}")
        return service.ready(settings)

    deadline = time.monotonic() + service.ready_timeout_s
    while True:
        try:
            if answers():
                return
        except ServiceFailed:
            raise
        except Exception as exc:  # not answering yet
            if time.monotonic() > deadline:
                raise ServiceFailed(
                    f"{service.name} did not answer at {service.url(settings)} within {service.ready_timeout_s:.0f}s "
                    f"({exc}); see {log_path}"
                ) from exc
        time.sleep(1.0)


def down(settings: Settings) -> None:
    # Reverse of the start order: Kafka, which the others' users need first, goes last.
    brokers = {service.name for service in kafka_services(settings)}
    for service in reversed(of(settings)):
        if service.name not in brokers and processes.stop(settings, service.name, timeout=60.0):
            log.info("service.down", name=service.name)
    stop_kafka(settings)


def stop_kafka(settings: Settings) -> None:
    """Stop the Kafka nodes all at once: stopped one after the other, the last would wait out its timeout
    for a controller quorum that left before it."""
    names = [service.name for service in kafka_services(settings)]
    # Each thread logs with this one's context (structlog's contextvars: the command's name).
    contexts = [contextvars.copy_context() for _ in names]
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(names)) as pool:
        stopped = pool.map(
            lambda context, name: context.run(processes.stop, settings, name, timeout=60.0), contexts, names
        )
        for name, was_running in zip(names, list(stopped), strict=True):
            if was_running:
                log.info("service.down", name=name)


def status_lines(settings: Settings) -> tuple[list[str], bool]:
    """One line per service, and whether all of them are up."""
    lines, all_up = [], True
    for service in of(settings):
        pid = processes.running_pid(settings, service.name)
        answering = False
        if pid is not None:
            try:
                answering = service.ready(settings)
            except Exception:
                answering = False
        state = "up" if answering else ("starting/unhealthy" if pid is not None else "down")
        all_up &= answering
        lines.append(f"{service.name:<14} {state:<18} pid={pid or '-':<8} {service.url(settings)}")
    return lines, all_up


def main(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "up":
        try:
            up(settings)
        except (ServiceFailed, ValueError) as exc:  # ValueError: settings that name no valid local cluster
            log.error("services.failed", error=str(exc))
            print(f"error: {exc}")
            return 1
    elif args.action == "down":
        down(settings)
        return 0
    lines, all_up = status_lines(settings)
    print("\n".join(lines))
    return 0 if all_up else 1
