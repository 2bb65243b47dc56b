"""How the API is served: uvicorn with every timeout set, so a slow client cannot hold a connection.

What uvicorn 0.54 offers is used as is: `timeout_keep_alive` closes an idle keep-alive
connection, `h11_max_incomplete_event_size` bounds a request head. What it lacks is
added here, each in the smallest place that can see it:

- a **header timeout**: uvicorn arms no timer while a request head arrives (its
  keep-alive timer stops at the first byte), so a client sending its headers a byte at
  a time held a connection forever. The head happens before any ASGI app runs, so this
  is a subclass of uvicorn's h11 protocol: the head must arrive whole within
  `api_header_timeout_s` of the connection or of its first byte, else the connection
  is closed.
- a **body timeout**: once the head is in, the app reads the body; `BodyReadTimeout`
  (ASGI) answers 408 when it has not arrived whole within `api_body_timeout_s`.
"""

from __future__ import annotations

import asyncio

import h11
import structlog
import uvicorn
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from ctrlgpt.settings import Settings

__all__ = ["BodyReadTimeout", "HeaderTimeoutProtocol", "server_config"]

log = structlog.get_logger()

REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request head (`header_timeout_s`, set by `server_config`)."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # h11 leaves IDLE once a whole request head is parsed; until then the deadline runs.
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm_head_deadline()
        else:
            self._disarm_head_deadline()

    def on_response_complete(self) -> None:
        # The next request's head is the keep-alive timer's until its first byte (data_received).
        self._disarm_head_deadline()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        log.warning(
            "http.header_timeout",
            client=f"{self.client[0]}:{self.client[1]}" if self.client else None,
            timeout_s=self.header_timeout_s,
        )
        self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()


class BodyReadTimeout:
    """Answer 408 (and so close the connection) when a request body has not arrived whole within `timeout_s`.

    The clock starts when the app first sees the request (its head is in). Once the body is
    in, `receive` passes through untouched: a streaming response waits on it for the
    client's disconnect, which may come at any time.
    """

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                log.warning("http.body_timeout", path=scope["path"], timeout_s=self.timeout_s)
                # Raised inside the app's body read: FastAPI re-raises an HTTPException as is.
                raise HTTPException(
                    408, detail=f"request body not received within {self.timeout_s} s", headers={"Connection": "close"}
                ) from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, timed_receive, send)


def server_config(settings: Settings, app: ASGIApp) -> uvicorn.Config:
    """uvicorn's configuration for `app` with this deployment's timeouts and limits."""
    protocol = type(
        "HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": settings.api_header_timeout_s}
    )
    return uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        http=protocol,
        timeout_keep_alive=settings.api_keep_alive_timeout_s,
        h11_max_incomplete_event_size=settings.api_max_header_bytes,
        log_config=None,
        access_log=False,
    )
