"""The local Elasticsearch: one node from the integ-test-zip on Maven Central, run as its own user.

Elasticsearch refuses to run as root, so the node runs as `settings.es_user`, a
system user created here, which owns everything under `<data_dir>/elasticsearch`.
The integ-test-zip carries only the core modules plus x-pack core and security
(no analysis-common, painless, ingest or reindex), so only core features exist.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import structlog

from ctrlgpt.settings import Settings
from deploy import processes

log = structlog.get_logger()

NAME = "elasticsearch"
READY_TIMEOUT_S = 180.0
ARTIFACT = "org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip"


def root(settings: Settings) -> Path:
    return settings.data_dir / "elasticsearch"


def distribution_zip(version: str) -> Path:
    """Where `mvn dependency:get` keeps the zip (deploy/bootstrap.sh fetches it)."""
    group = Path.home() / ".m2/repository/org/elasticsearch/distribution/integ-test-zip/elasticsearch"
    return group / version / f"elasticsearch-{version}.zip"


def http_address(es_url: str) -> tuple[str, int]:
    parts = urlsplit(es_url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"es_url must be http://HOST:PORT for the local node, got {es_url!r}")
    return parts.hostname, parts.port or 9200


def elasticsearch_yml(settings: Settings) -> str:
    host, port = http_address(settings.es_url)
    base = root(settings)
    return (
        "cluster.name: ctrlgpt\n"
        "node.name: ctrlgpt-1\n"
        f"path.data: {base / 'data'}\n"
        f"path.logs: {base / 'logs'}\n"
        f"network.host: {host}\n"
        f"http.port: {port}\n"
        # Single node bound to loopback: no discovery, and the production bootstrap checks do not apply.
        "discovery.type: single-node\n"
        # Local only, on loopback: no TLS or passwords (the zip's x-pack security would demand them).
        "xpack.security.enabled: false\n"
        # A small disk must not turn the indices read-only in the middle of a demo.
        "cluster.routing.allocation.disk.threshold_enabled: false\n"
    )


def jvm_options(settings: Settings) -> str:
    """The zip's JVM options with a modest heap and every output file under the logs dir."""
    logs = root(settings) / "logs"
    return (
        "-Xms512m\n"
        "-Xmx1g\n"
        "-XX:+UseG1GC\n"
        "-Djava.io.tmpdir=${ES_TMPDIR}\n"
        "20-:--add-modules=jdk.incubator.vector\n"
        "-Dorg.apache.lucene.store.MMapDirectory.sharedArenaMaxPermits=1\n"
        "-XX:+ExitOnOutOfMemoryError\n"
        f"-XX:ErrorFile={logs}/hs_err_pid%p.log\n"
        f"-Xlog:gc*,gc+age=trace,safepoint:file={logs}/gc.log:utctime,level,pid,tags:filecount=4,filesize=16m\n"
    )


def ensure_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        log.info("elasticsearch.user_created", user=name)


def unreachable_parent(path: Path, user: str) -> Path | None:
    """The first directory on the way to `path` that `user` cannot traverse, if any."""
    for directory in [*reversed(path.parents), path]:
        probe = subprocess.run(
            ["test", "-x", str(directory)], user=user, group=pwd.getpwnam(user).pw_gid, extra_groups=[], check=False
        )
        if probe.returncode != 0:
            return directory
    return None


def extract(archive: Path, target: Path) -> None:
    """Unzip keeping the executable bits (zipfile alone drops them), atomically."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with zipfile.ZipFile(archive) as bundle:
        for member in bundle.infolist():
            written = Path(bundle.extract(member, partial))
            mode = member.external_attr >> 16
            if mode and not member.is_dir():
                os.chmod(written, mode & 0o777)
    (top,) = list(partial.iterdir())
    top.rename(target)
    partial.rmdir()


def prepare(settings: Settings) -> tuple[list[str], dict[str, str]]:
    """Install and configure the node; returns its command line and environment."""
    user = settings.es_user
    ensure_user(user)
    base = root(settings)
    base.mkdir(parents=True, exist_ok=True)
    blocked = unreachable_parent(base, user)
    if blocked is not None:
        raise PermissionError(
            f"Elasticsearch runs as user {user!r}, which cannot reach {base}: it may not enter {blocked}. "
            f"Either allow it (`chmod o+x {blocked}`) or move the data elsewhere (CTRLGPT_DATA_DIR=/var/lib/ctrlgpt)."
        )
    home = base / f"elasticsearch-{settings.es_version}"
    if not home.exists():
        archive = distribution_zip(settings.es_version)
        if not archive.exists():
            raise FileNotFoundError(
                f"{archive} is missing: run deploy/bootstrap.sh (it fetches {ARTIFACT.format(version=settings.es_version)})"
            )
        log.info("elasticsearch.extracting", archive=str(archive), target=str(home))
        extract(archive, home)
    config = base / "config"
    if not config.exists():
        shutil.copytree(home / "config", config)
    (config / "elasticsearch.yml").write_text(elasticsearch_yml(settings))
    (config / "jvm.options").write_text(jvm_options(settings))
    for directory in ("data", "logs"):
        (base / directory).mkdir(exist_ok=True)
    _chown_tree(base, user)
    env = {"ES_JAVA_HOME": str(settings.es_java_home), "ES_PATH_CONF": str(config), "HOME": str(base)}
    return [str(home / "bin" / "elasticsearch")], env


def _chown_tree(top: Path, user: str) -> None:
    account = pwd.getpwnam(user)
    for directory, subdirectories, files in os.walk(top):
        for name in [directory, *(os.path.join(directory, entry) for entry in subdirectories + files)]:
            if os.lstat(name).st_uid != account.pw_uid:
                os.lchown(name, account.pw_uid, account.pw_gid)


def start(settings: Settings) -> int:
    pid = processes.running_pid(settings, NAME)
    if pid is not None:
        return pid
    argv, env = prepare(settings)
    return processes.start(settings, NAME, argv, env=env, cwd=root(settings), user=settings.es_user)


def ready(settings: Settings) -> bool:
    response = httpx.get(
        f"{settings.es_url}/_cluster/health", params={"wait_for_status": "yellow", "timeout": "2s"}, timeout=5
    )
    return response.status_code == 200 and response.json()["status"] in ("yellow", "green")


def url(settings: Settings) -> str:
    return settings.es_url


def address(settings: Settings) -> tuple[str, int]:
    return http_address(settings.es_url)
