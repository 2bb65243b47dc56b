"""The local PostgreSQL 15 (Debian's `postgresql` package): doccano's database, read by Debezium.

A cluster of our own under `<data_dir>/postgres/data`, owned and run by the `postgres`
system user (the server refuses root), listening on 127.0.0.1 only, with
`wal_level=logical` so that Debezium can stream its changes. Two password roles,
their passwords in the secrets file (sent to psql on stdin, never on a command line):
doccano's (owner of its database) and Debezium's replication role. The publication
Debezium reads is made after doccano created its tables (`ensure_publication`).
"""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

import structlog

from ctrlgpt import secrets
from ctrlgpt.retry import retrying
from ctrlgpt.settings import Settings
from deploy import processes
from streams import topics

log = structlog.get_logger()

NAME = "postgres"
READY_TIMEOUT_S = 60.0
HOST = "127.0.0.1"
CDC_ROLE = "ctrlgpt_cdc"
PUBLICATION = "ctrlgpt_labels"
# Deleted rows must carry every column (REPLICA IDENTITY FULL): a deletion's example id is
# how the label bridge finds the labels it withdraws.
CDC_TABLES = topics.DOCCANO_CHANGE_TABLES


class PostgresError(RuntimeError):
    """psql refused a statement; the message holds its output."""


def home(settings: Settings) -> Path:
    return settings.data_dir / "postgres"


def data_directory(settings: Settings) -> Path:
    return home(settings) / "data"


def socket_directory(settings: Settings) -> Path:
    # Our own socket directory: /var/run/postgresql may belong to a system cluster, or not exist.
    return home(settings) / "socket"


def _binary(settings: Settings, name: str) -> str:
    path = settings.postgres_bin_dir / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run deploy/bootstrap.sh (installs Debian's postgresql)")
    return str(path)


def _own(settings: Settings, path: Path) -> None:
    account = pwd.getpwnam(settings.postgres_user)
    os.chown(path, account.pw_uid, account.pw_gid)


def server_options(settings: Settings) -> list[str]:
    """`-c` options of the server: given on its command line, so a reused data directory gets them too."""
    options = {
        "listen_addresses": HOST,
        "port": str(settings.postgres_port),
        "unix_socket_directories": str(socket_directory(settings)),
        "wal_level": "logical",
        "max_wal_senders": "4",
        "max_replication_slots": "4",
        # Small machine, few clients: doccano's two workers, Debezium, psql.
        "max_connections": "40",
        "shared_buffers": "64MB",
        "logging_collector": "off",  # stdout goes to <data_dir>/logs/postgres.log
    }
    return [arg for key, value in options.items() for arg in ("-c", f"{key}={value}")]


def prepare(settings: Settings) -> list[str]:
    """initdb once (as the postgres user); returns the server's command line."""
    root, data, sockets = home(settings), data_directory(settings), socket_directory(settings)
    for directory in (root, sockets):
        directory.mkdir(parents=True, exist_ok=True)
        _own(settings, directory)
    if not (data / "PG_VERSION").exists():
        data.mkdir(mode=0o700, exist_ok=True)
        _own(settings, data)
        # peer: only the postgres system user gets in over the socket (for psql below);
        # TCP on 127.0.0.1 needs a password (scram-sha-256), replication included.
        result = subprocess.run(
            [
                _binary(settings, "initdb"),
                "-D",
                str(data),
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                "-U",
                "postgres",
            ],
            user=settings.postgres_user,
            capture_output=True,
            text=True,
            check=False,
            cwd=root,
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb of {data} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
        log.info("postgres.initialized", data=str(data))
    return [_binary(settings, "postgres"), "-D", str(data), *server_options(settings)]


def start(settings: Settings) -> int:
    pid = processes.running_pid(settings, NAME)
    if pid is None:
        pid = processes.start(settings, NAME, prepare(settings), cwd=home(settings), user=settings.postgres_user)
    # Roles and database now: doccano, which starts next, migrates onto them. PostgreSQL is up
    # within seconds; a cluster in crash recovery takes longer, hence the wait.
    for attempt in retrying(PostgresError, what="postgres accepting connections", give_up_after_s=READY_TIMEOUT_S):
        with attempt:
            _require_ready(settings)
    ensure_roles(settings)
    return pid


def psql(settings: Settings, sql: str, *, database: str = "postgres") -> str:
    """Run `sql` as the superuser over our socket; the statements go on stdin (passwords stay off `ps`)."""
    result = subprocess.run(
        [
            _binary(settings, "psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(socket_directory(settings)),
            "-p",
            str(settings.postgres_port),
            "-U",
            "postgres",
            "-d",
            database,
        ],
        input=sql,
        user=settings.postgres_user,
        capture_output=True,
        text=True,
        check=False,
        cwd=home(settings),
    )
    if result.returncode != 0:
        raise PostgresError(f"psql failed: {result.stderr[-2000:]}")
    return result.stdout


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def ensure_roles(settings: Settings) -> None:
    """doccano's role and database, Debezium's replication role; passwords (re)applied from the secrets file."""
    stored = secrets.load_or_create(settings.secrets_file)
    database = settings.doccano_database
    psql(
        settings,
        f"""
        SELECT format('CREATE ROLE %I LOGIN', {_literal(database)})
            WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {_literal(database)}) \\gexec
        ALTER ROLE "{database}" LOGIN PASSWORD {_literal(stored.doccano_db_password)};
        SELECT format('CREATE DATABASE %I OWNER %I', {_literal(database)}, {_literal(database)})
            WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {_literal(database)}) \\gexec
        SELECT 'CREATE ROLE {CDC_ROLE} LOGIN REPLICATION'
            WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{CDC_ROLE}') \\gexec
        ALTER ROLE {CDC_ROLE} LOGIN REPLICATION PASSWORD {_literal(stored.cdc_db_password)};
        GRANT CONNECT ON DATABASE "{database}" TO {CDC_ROLE};
        """,
    )


def ensure_publication(settings: Settings) -> None:
    """Once doccano's tables exist: Debezium's role may read them, deletions carry whole rows, one publication."""
    tables = ", ".join(CDC_TABLES)
    statements = [
        f"GRANT USAGE ON SCHEMA public TO {CDC_ROLE};",
        f"GRANT SELECT ON {tables} TO {CDC_ROLE};",
        *(f"ALTER TABLE {table} REPLICA IDENTITY FULL;" for table in CDC_TABLES),
        f"SELECT 'CREATE PUBLICATION {PUBLICATION}' WHERE NOT EXISTS "
        f"(SELECT FROM pg_publication WHERE pubname = '{PUBLICATION}') \\gexec",
        f"ALTER PUBLICATION {PUBLICATION} SET TABLE {tables};",
    ]
    psql(settings, "\n".join(statements), database=settings.doccano_database)
    log.info("postgres.publication_ensured", publication=PUBLICATION, tables=list(CDC_TABLES))


def database_url(settings: Settings, *, user: str, password: str) -> str:
    """A libpq/dj-database-url URL of doccano's database (no TLS on the loopback)."""
    return f"postgres://{user}:{password}@{HOST}:{settings.postgres_port}/{settings.doccano_database}?sslmode=disable"


def _require_ready(settings: Settings) -> None:
    result = subprocess.run(
        [_binary(settings, "pg_isready"), "-q", "-h", HOST, "-p", str(settings.postgres_port)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise PostgresError(f"PostgreSQL at {HOST}:{settings.postgres_port} is not accepting connections")


def ready(settings: Settings) -> bool:
    _require_ready(settings)
    return True


def url(settings: Settings) -> str:
    return f"postgresql://{HOST}:{settings.postgres_port}/{settings.doccano_database}"


def address(settings: Settings) -> tuple[str, int]:
    return HOST, settings.postgres_port
