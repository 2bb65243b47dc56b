"""Credentials generated at first start and kept in the data directory, owner-only.

Nothing secret is hard-coded or committed: the doccano admin password and the
API's admin key are created here once and read back by every service.
"""

from __future__ import annotations

import json
import os
import secrets as _random
from pathlib import Path

from pydantic import BaseModel


class Secrets(BaseModel):
    doccano_password: str
    api_admin_key: str


def load_or_create(path: Path) -> Secrets:
    if path.exists():
        return Secrets.model_validate_json(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    created = Secrets(doccano_password=_random.token_urlsafe(18), api_admin_key=_random.token_urlsafe(32))
    # O_EXCL: two services starting at once must not write two different secrets.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return Secrets.model_validate_json(path.read_text())
    with os.fdopen(fd, "w") as handle:
        json.dump(created.model_dump(), handle)
    return created
