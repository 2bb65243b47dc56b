"""What runs inside ctrlgpt's pods besides the service: the secrets file, and the workers' health probe.

The services read their credentials from `data_dir/secrets.json` (ctrlgpt.secrets), which they open
read-write; a Secret is mounted read-only, one file per key, so an init container writes the file from it.

The workers (crawler, cleaner, sinks, label bridge, trainer) serve no HTTP. A worker that works is a member
of its consumer group, and Kafka knows each member's address: the probe asks the AdminClient whether a member
of the group connects from this pod's IP. A worker that died, hung past its session timeout or lost Kafka
is not one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import structlog
from confluent_kafka.admin import AdminClient

from ctrlgpt.secrets import Secrets
from ctrlgpt.settings import Settings

log = structlog.get_logger()


def secrets_from_dir(directory: Path) -> Secrets:
    """The secrets from a mounted Secret: one file per field, named after it; other keys are ignored."""
    values = {}
    for name in Secrets.model_fields:
        path = directory / name
        if not path.exists():
            raise FileNotFoundError(f"the Secret mounted at {directory} has no key {name!r} (docs/deploy.md)")
        values[name] = path.read_text().strip()
    return Secrets.model_validate(values)


def write_secrets_file(secrets: Secrets, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(secrets.model_dump_json())


def member_from(hosts: Iterable[str], pod_ip: str) -> bool:
    """Whether one of a group's members connects from `pod_ip` (Kafka reports a member's host as "/IP")."""
    return any(host.lstrip("/") == pod_ip for host in hosts)


def group_member_hosts(settings: Settings, group: str, timeout_s: float) -> list[str]:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    description = admin.describe_consumer_groups([group], request_timeout=timeout_s)[group].result(timeout_s)
    return [member.host for member in description.members]


def probe(settings: Settings, group: str, pod_ip: str, timeout_s: float = 10.0) -> bool:
    """Whether this pod (`pod_ip`) is a member of `group`; within the probe's timeoutSeconds (20 s)."""
    try:
        hosts = group_member_hosts(settings, group, timeout_s)
    except Exception as exc:  # Kafka away or the group unknown: not healthy, and say why
        log.warning("kube.probe_failed", group=group, error=repr(exc))
        return False
    healthy = member_from(hosts, pod_ip)
    if not healthy:
        log.warning("kube.not_a_member", group=group, pod_ip=pod_ip, members=hosts)
    return healthy
