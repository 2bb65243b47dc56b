"""The crawler's plain-HTTP fetch (`fetch_mode="http"`): one GET, no browser, for pages without JavaScript.

The body is read up to a size cap and decoded strictly by its declared charset, so a
page too large or not valid in its own encoding is refused with the reason.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Mapping

import httpx

from producers.browser import FetchError, Loaded
from producers.frontier import is_html

__all__ = ["decode_body", "fetch", "read_capped"]


def decode_body(body: bytes, charset: str | None) -> str:
    """`body` decoded by its declared charset (UTF-8 if none); raises FetchError if it is not valid in it."""
    name = charset or "utf-8"
    try:
        codecs.lookup(name)
    except LookupError as exc:
        raise FetchError(f"unknown charset {name!r}", transient=False, error_type="UndecodableBody") from exc
    try:
        return body.decode(name)
    except UnicodeDecodeError as exc:
        raise FetchError(
            f"body is not valid {name}: {exc.reason} at byte {exc.start}", transient=False, error_type="UndecodableBody"
        ) from exc


def fetch(client: httpx.Client, url: str, *, max_bytes: int, headers: Mapping[str, str]) -> Loaded:
    """GET `url` with the client's User-Agent and timeout, plus `headers` (conditional ones, say). A redirect is
    not followed but returned (the crawler follows it through the origin's politeness turn).

    Answers that are not 2xx HTML come back with an empty body.
    """
    started = time.monotonic()
    try:
        with client.stream("GET", url, headers=dict(headers), follow_redirects=False) as response:
            content_type = response.headers.get("content-type", "")
            body = b""
            if is_html(content_type) and 200 <= response.status_code < 300:
                body = read_capped(response, url, max_bytes)
            final_url, status, charset = str(response.url), response.status_code, response.charset_encoding
            answered = dict(response.headers)
    except httpx.TimeoutException as exc:
        raise FetchError(f"load timed out: {type(exc).__name__}", transient=True, error_type="Timeout") from exc
    except httpx.HTTPError as exc:
        raise FetchError(f"network error: {exc!r}", transient=True, error_type="NetworkError") from exc
    return Loaded(
        final_url=final_url,
        status=status,
        content_type=content_type,
        html=decode_body(body, charset) if body else "",
        elapsed_ms=int((time.monotonic() - started) * 1000),
        headers=answered,
    )


def read_capped(response: httpx.Response, url: str, max_bytes: int) -> bytes:
    """A streamed body, refused (FetchError "TooLarge") once it passes `max_bytes`."""
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise FetchError(
                f"page too large to publish: over {max_bytes} bytes from {url}", transient=False, error_type="TooLarge"
            )
        chunks.append(chunk)
    return b"".join(chunks)
