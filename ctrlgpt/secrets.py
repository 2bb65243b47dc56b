"""Credentials generated at first start and kept in the data directory, owner-only.

Nothing secret is hard-coded or committed: the doccano admin password, the API's
admin key, the object store's keys and the key that signs model announcements are
created here once and read back by every service.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets as _random
from pathlib import Path

from pydantic import BaseModel, Field


def _password() -> str:
    return _random.token_urlsafe(18)


class Secrets(BaseModel):
    doccano_password: str
    api_admin_key: str
    # PostgreSQL roles: doccano's own, and Debezium's replication role. Files of earlier
    # releases lack them: `load_or_create` adds them once and keeps them.
    doccano_db_password: str = Field(default_factory=_password)
    cdc_db_password: str = Field(default_factory=_password)
    # The local s3proxy's keys, and the HMAC key of model announcements (trainer and API replicas).
    objectstore_access_key: str = Field(default_factory=lambda: _random.token_hex(10))
    objectstore_secret_key: str = Field(default_factory=_password)
    model_signing_key: str = Field(default_factory=lambda: _random.token_urlsafe(32))


def load_or_create(path: Path) -> Secrets:
    if path.exists():
        return _with_every_field(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    created = Secrets(doccano_password=_random.token_urlsafe(18), api_admin_key=_random.token_urlsafe(32))
    # O_EXCL: two services starting at once must not write two different secrets.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _with_every_field(path)
    with os.fdopen(fd, "w") as handle:
        json.dump(created.model_dump(), handle)
    return created


def _with_every_field(path: Path) -> Secrets:
    """The secrets in `path`; a file missing newer fields gets them generated, once, under a lock."""
    with open(path, "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # two services upgrading at once must keep one set of passwords
        stored = json.loads(handle.read())
        loaded = Secrets.model_validate(stored)
        if set(stored) != set(Secrets.model_fields):
            handle.seek(0)
            handle.truncate()
            json.dump(loaded.model_dump(), handle)
            handle.flush()
            os.fsync(handle.fileno())
        return loaded
