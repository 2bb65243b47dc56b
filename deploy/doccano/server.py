"""The local doccano 1.8.4: its own venv (.venv-doccano), its data in the local PostgreSQL.

doccano reads its database from `DATABASE_URL` (deploy.postgres: a database and a role
of its own, the role's password in the secrets file) and keeps media under
$DOCCANO_HOME, a directory only its owner can read; Django's secret key is generated once
and kept there, owner-only. The first start migrates the schema, then makes the
publication Debezium reads. The admin's password comes from the secrets file and is
(re)applied each time the server starts, handed over on stdin: never on a command line,
where `ps` would show it.

The server is doccano's WSGI application under gunicorn, started here rather than by
`doccano webserver`, which binds every interface (0.0.0.0) and pins gunicorn < 21: it
binds `doccano_host` (127.0.0.1 unless set) and runs the gunicorn of the lock
(deploy/doccano/overrides.txt).
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import structlog

from ctrlgpt import secrets as ctrlgpt_secrets
from ctrlgpt.settings import REPO_ROOT, Settings
from deploy import processes
from deploy.postgres import server as postgres

log = structlog.get_logger()

NAME = "doccano"
VERSION = "1.8.4"
VENV = REPO_ROOT / ".venv-doccano"
READY_TIMEOUT_S = 120.0
WORKERS = 2  # doccano's default, 2 x cores + 1, is too much memory for a laptop demo
ADMIN_EMAIL = "admin@example.com"


def home(settings: Settings) -> Path:
    return settings.data_dir / "doccano"


def http_address(doccano_url: str) -> tuple[str, int]:
    parts = urlsplit(doccano_url)
    if not parts.hostname or parts.port is None:
        raise ValueError(f"doccano_url must be http://HOST:PORT, got {doccano_url!r}")
    return parts.hostname, parts.port


def secret_key(directory: Path) -> str:
    path = directory / "secret-key"
    if not path.exists():
        # O_EXCL + 0600: created once, readable by the owner only.
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


def _environment(settings: Settings) -> dict[str, str]:
    directory = home(settings)
    password = ctrlgpt_secrets.load_or_create(settings.secrets_file).doccano_db_password
    return {
        "DOCCANO_HOME": str(directory),
        "SECRET_KEY": secret_key(directory),
        "DEBUG": "False",
        # What `doccano webserver` sets before it starts gunicorn (backend/cli.py).
        "STANDALONE": "True",
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "MEDIA_ROOT": str(directory / "media"),
        "DATABASE_URL": postgres.database_url(settings, user=settings.doccano_database, password=password),
        # A connection per request: after PostgreSQL restarts no worker holds a dead one.
        "DATABASE_CONN_MAX_AGE": "0",
        # doccano imports its apps by bare names (`api`): ctrlgpt's tree on PYTHONPATH would shadow them.
        "PYTHONPATH": "",
    }


def _doccano(settings: Settings, env: dict[str, str], *args: str, stdin: str | None = None) -> None:
    """Run doccano's command line (`args`), or with `args` = ("-c", CODE) Python code in doccano's venv."""
    program = [str(VENV / "bin" / "python"), *args] if args[0] == "-c" else [str(VENV / "bin" / "doccano"), *args]
    result = subprocess.run(
        program,
        env={**os.environ, **env},
        cwd=home(settings),
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"`doccano {args[0]}` failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")


# doccano's own `createuser` (create the admin or reset its password), with the password read
# from stdin instead of `--password=...`. Importing backend.cli sets doccano's environment up.
CREATE_ADMIN = """
import argparse, sys
from backend import cli
cli.django.setup()
cli.command_user_create(argparse.Namespace(username=sys.argv[1], email=sys.argv[2], password=sys.stdin.read()))
"""


def backend_dir() -> Path:
    """doccano's Django project (where `config.wsgi` lives), inside its venv."""
    return next((VENV / "lib").glob("python3*/site-packages/backend"))


def prepare(settings: Settings) -> tuple[list[str], dict[str, str]]:
    """Create the database once and set the admin's password; returns the server's command line and environment."""
    if not (VENV / "bin" / "doccano").exists():
        raise FileNotFoundError(f"{VENV} has no doccano: run deploy/bootstrap.sh")
    directory = home(settings)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)  # media and the secret key: the owner's only, also in a directory made before
    env = _environment(settings)
    # The mark lives beside the database it describes: a new PostgreSQL cluster is migrated anew.
    initialized = postgres.home(settings) / f"doccano-initialized-{VERSION}"
    if not initialized.exists():
        log.info("doccano.initializing", database=postgres.url(settings))
        _doccano(settings, env, "init")
        postgres.ensure_publication(settings)
        initialized.touch()
    password = ctrlgpt_secrets.load_or_create(settings.secrets_file).doccano_password
    _doccano(settings, env, "-c", CREATE_ADMIN, settings.doccano_username, ADMIN_EMAIL, stdin=password)
    argv = [
        str(VENV / "bin" / "gunicorn"),
        "--bind",
        f"{settings.doccano_host}:{http_address(settings.doccano_url)[1]}",
        "--workers",
        str(WORKERS),
        "--chdir",
        str(backend_dir()),
        "--capture-output",
        "--log-level",
        "info",
        "config.wsgi",
    ]
    return argv, env


def start(settings: Settings) -> int:
    pid = processes.running_pid(settings, NAME)
    if pid is not None:
        return pid
    argv, env = prepare(settings)
    # cwd matters: doccano imports its apps by bare names (`api`), which the repo root would shadow.
    return processes.start(settings, NAME, argv, env=env, cwd=home(settings))


def login(settings: Settings) -> str:
    """An API token for the admin, as the REST API hands it out."""
    password = ctrlgpt_secrets.load_or_create(settings.secrets_file).doccano_password
    response = httpx.post(
        f"{settings.doccano_url}/v1/auth/login/",
        json={"username": settings.doccano_username, "password": password},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()["key"]


def ready(settings: Settings) -> bool:
    return bool(login(settings))


def url(settings: Settings) -> str:
    return settings.doccano_url


def address(settings: Settings) -> tuple[str, int]:
    return http_address(settings.doccano_url)
