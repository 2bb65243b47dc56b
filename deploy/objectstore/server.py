"""The local object store: s3proxy (S3-compatible, Apache-2.0) on jclouds' filesystem provider.

`deploy/objectstore/pom.xml` names `org.gaul:s3proxy`; Maven resolves it into ~/.m2 once and
the classpath is cached in ~/.cache/ctrlgpt (deploy/bootstrap.sh writes the same file). Buckets
are directories under `<data_dir>/objectstore/data`; it listens on 127.0.0.1 (objectstore_url)
and answers only requests signed with the keys generated into the secrets file. It is the
stand-in, on one machine, for the object store a cluster points `model_store` at.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from ctrlgpt import objectstore
from ctrlgpt.settings import REPO_ROOT, Settings
from deploy import maven, processes

NAME = "objectstore"
POM = REPO_ROOT / "deploy" / "objectstore" / "pom.xml"
CLASSPATH_CACHE = Path.home() / ".cache" / "ctrlgpt" / "objectstore-classpath.txt"
READY_TIMEOUT_S = 90.0


def home(settings: Settings) -> Path:
    return settings.data_dir / "objectstore"


def address(settings: Settings) -> tuple[str, int]:
    parts = urlsplit(settings.objectstore_url)
    if parts.scheme != "http" or not parts.hostname or parts.port is None:
        raise ValueError(f"objectstore_url must be http://HOST:PORT for the local s3proxy, got {parts.geturl()!r}")
    return parts.hostname, parts.port


def url(settings: Settings) -> str:
    return settings.objectstore_url


def properties(settings: Settings, basedir: Path) -> str:
    host, port = address(settings)
    keys = objectstore.credentials(settings)
    values = {
        "s3proxy.endpoint": f"http://{host}:{port}",
        "s3proxy.authorization": "aws-v2-or-v4",
        "s3proxy.identity": keys.access_key,
        "s3proxy.credential": keys.secret_key,
        "jclouds.provider": "filesystem",
        "jclouds.filesystem.basedir": str(basedir),
        # The filesystem provider takes no keys of its own; jclouds wants them set.
        "jclouds.identity": "local",
        "jclouds.credential": "local",
    }
    return "".join(f"{key}={value}\n" for key, value in values.items())


def classpath() -> str:
    """s3proxy's jars, resolved by Maven (offline when cached) and remembered."""
    return maven.classpath(POM, CLASSPATH_CACHE, "s3proxy")


def prepare(settings: Settings) -> list[str]:
    """Write s3proxy's configuration (owner-only: it holds the keys); returns its command line."""
    root = home(settings)
    basedir = root / "data"
    basedir.mkdir(parents=True, exist_ok=True)
    config = root / "s3proxy.properties"
    with os.fdopen(os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(properties(settings, basedir))
    return [
        str(settings.kafka_java_home / "bin" / "java"),
        "-Xms64m",
        "-Xmx256m",
        "-Djava.awt.headless=true",
        "-cp",
        classpath(),
        "org.gaul.s3proxy.Main",
        "--properties",
        str(config),
    ]


def start(settings: Settings) -> int:
    pid = processes.running_pid(settings, NAME)
    if pid is not None:
        return pid
    return processes.start(settings, NAME, prepare(settings), cwd=home(settings))


def ready(settings: Settings) -> bool:
    """It answers a signed request: the keys it holds are the ones clients use."""
    objectstore.client(settings, timeout_s=5.0).list_buckets()
    return True
