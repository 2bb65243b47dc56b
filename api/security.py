"""The admin key: read once when the app is built, checked on every admin request.

The key is `secrets.load_or_create(settings.secrets_file).api_admin_key`, sent as `X-API-Key: KEY`
or `Authorization: Bearer KEY`.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status

from ctrlgpt import secrets
from ctrlgpt.settings import Settings


def read_admin_key(settings: Settings) -> str:
    return secrets.load_or_create(settings.secrets_file).api_admin_key


async def get_admin_key(request: Request) -> str:
    return request.app.state.admin_key


AdminKeyDep = Annotated[str, Depends(get_admin_key)]


async def require_admin_key(
    expected: AdminKeyDep,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    given = x_api_key
    if given is None and authorization is not None:
        scheme, _, token = authorization.partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else None
    # Constant time: how long a wrong key takes must not tell how much of it was right.
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="admin key required: send X-API-Key or Authorization: Bearer",
            headers={"WWW-Authenticate": "Bearer"},
        )
