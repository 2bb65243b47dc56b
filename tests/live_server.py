"""An app served by uvicorn on loopback in a thread, and a headless Chromium page, for browser tests."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI
from playwright.sync_api import Page, sync_playwright

from ctrlgpt.settings import Settings
from producers.browser import CHROMIUM_ARGS


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serving(app: FastAPI, port: int) -> Iterator[str]:
    """`app` on 127.0.0.1:`port` until the block ends; yields its base URL once it accepts requests."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            threading.Event().wait(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def chromium_page(settings: Settings, timeout_ms: int) -> Iterator[Page]:
    """A page of Debian's Chromium driven by Playwright, as the crawler drives it."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(settings.chromium_path), headless=True, args=list(CHROMIUM_ARGS)
        )
        page = browser.new_page()
        page.set_default_timeout(timeout_ms)
        try:
            yield page
        finally:
            browser.close()
