"""The local PostgreSQL of doccano: its configuration (pure) and the running cluster (integration)."""

from __future__ import annotations

import os
import pwd
import subprocess

import pytest

from ctrlgpt import secrets
from ctrlgpt.settings import Settings
from deploy import processes
from deploy.postgres import server
from streams import topics


def test_the_server_listens_on_the_loopback_with_logical_decoding() -> None:
    options = server.server_options(Settings(postgres_port=6543))
    pairs = dict(option.split("=", 1) for option in options[1::2])
    assert (pairs["listen_addresses"], pairs["port"], pairs["wal_level"]) == ("127.0.0.1", "6543", "logical")
    assert set(options[0::2]) == {"-c"}


def test_the_database_url_asks_for_no_tls_on_the_loopback() -> None:
    url = server.database_url(Settings(postgres_port=6543), user="doccano", password="pw")
    assert url == "postgres://doccano:pw@127.0.0.1:6543/doccano?sslmode=disable"


def _tcp_query(settings: Settings, user: str, password: str, sql: str) -> subprocess.CompletedProcess:
    # The password goes in the environment, never on the command line.
    return subprocess.run(
        [
            str(settings.postgres_bin_dir / "psql"),
            "-X",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-p",
            str(settings.postgres_port),
            "-U",
            user,
            "-d",
            settings.doccano_database,
            "-c",
            sql,
        ],
        env={**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.integration
def test_the_cluster_runs_as_postgres_with_logical_wal(settings: Settings) -> None:
    pid = processes.running_pid(settings, server.NAME)
    assert pid is not None
    assert os.stat(f"/proc/{pid}").st_uid == pwd.getpwnam(settings.postgres_user).pw_uid
    assert server.psql(settings, "SHOW wal_level; SHOW listen_addresses;").split() == ["logical", "127.0.0.1"]


@pytest.mark.integration
def test_doccanos_role_needs_its_password(settings: Settings) -> None:
    password = secrets.load_or_create(settings.secrets_file).doccano_db_password
    assert _tcp_query(settings, settings.doccano_database, password, "SELECT 1").stdout.strip() == "1"
    refused = _tcp_query(settings, settings.doccano_database, password + "x", "SELECT 1")
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr


@pytest.mark.integration
def test_the_publication_holds_exactly_the_tables_the_bridge_follows_with_whole_deleted_rows(
    settings: Settings,
) -> None:
    server.ensure_roles(settings)  # idempotent: running it again changes nothing
    server.ensure_publication(settings)
    published = server.psql(
        settings,
        f"SELECT tablename FROM pg_publication_tables WHERE pubname = '{server.PUBLICATION}' ORDER BY 1;",
        database=settings.doccano_database,
    ).split()
    assert published == sorted(topics.DOCCANO_CHANGE_TABLES)
    identities = server.psql(
        settings,
        "SELECT relname, relreplident FROM pg_class WHERE relname IN ("
        + ", ".join(f"'{table}'" for table in topics.DOCCANO_CHANGE_TABLES)
        + ");",
        database=settings.doccano_database,
    ).split()
    assert sorted(identities) == sorted(f"{table}|f" for table in topics.DOCCANO_CHANGE_TABLES)
    cdc = secrets.load_or_create(settings.secrets_file).cdc_db_password
    assert _tcp_query(settings, server.CDC_ROLE, cdc, "SELECT count(*) >= 0 FROM labels_category").stdout.strip() == "t"
