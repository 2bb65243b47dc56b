"""GET /try: a page where a person generates text and judges it (thumbs, or the better of two).

Static HTML, CSS and plain JavaScript from `api/static/` (no build step, no CDN); the page
calls the public API (/v1/generate, /v1/feedback) like any client, and learns the targets
and limits of this deployment from GET /try/config.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse
from pydantic import BaseModel

from api.deps import SettingsDep

router = APIRouter(tags=["try"])

STATIC = Path(__file__).resolve().parents[1] / "static"
ASSETS = {"try.js": "text/javascript", "try.css": "text/css"}


class TryConfig(BaseModel):
    targets: list[str]
    default_target: str
    max_new_tokens_limit: int
    max_prompt_chars: int


@router.get("/try", response_class=FileResponse, include_in_schema=False)
async def try_page() -> FileResponse:
    return FileResponse(STATIC / "try.html", media_type="text/html")


@router.get("/try/config", response_model=TryConfig)
async def try_config(settings: SettingsDep) -> TryConfig:
    return TryConfig(
        targets=settings.target_list,
        default_target=settings.target_sentiment,
        max_new_tokens_limit=settings.max_new_tokens_limit,
        max_prompt_chars=settings.max_prompt_chars,
    )


@router.get("/try/{asset}", response_class=FileResponse, include_in_schema=False)
async def try_asset(asset: str) -> FileResponse:
    if asset not in ASSETS:  # a fixed list: no path from the URL reaches the file system
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no asset {asset!r} of the try page")
    return FileResponse(STATIC / asset, media_type=ASSETS[asset])
