"""One headless Chromium that loads pages as a person's browser would, several at a time.

The browser is the system's Chromium (`settings.chromium_path`); Playwright's own
download is never used. Playwright's async API runs on the browser's own thread and
event loop, so every Playwright object stays on one thread; `load` may be called from
any thread and blocks until its page is done. At most `crawl_browser_pages` pages of the
one browser context are open at once.

A load is one request for the page: its redirects come back to the crawler, which follows them
through the origin's politeness turn, and the page's own requests the crawl does not need (the
resource types of `crawl_blocked_resource_types`, the favicon) never leave the browser.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

import structlog
from playwright.async_api import APIResponse, Route, async_playwright
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from ctrlgpt.settings import Settings
from producers import identity

__all__ = ["CHROMIUM_ARGS", "Browser", "FetchError", "Loaded"]

log = structlog.get_logger()

_T = TypeVar("_T")

CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


@dataclass(frozen=True)
class Loaded:
    """What the fetch saw: the main response's status, type and headers (lowercase names), and the HTML."""

    final_url: str
    status: int
    content_type: str
    html: str
    elapsed_ms: int
    headers: Mapping[str, str] = field(default_factory=dict)


class FetchError(Exception):
    """A load that failed; `transient` says whether trying again may help."""

    def __init__(self, reason: str, *, transient: bool, error_type: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.error_type = error_type


class Browser:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._blocked = frozenset(filter(None, map(str.strip, settings.crawl_blocked_resource_types.split(","))))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="browser", daemon=True)
        self._thread.start()
        self._call(self._start())

    def _call(self, work: Coroutine[object, object, _T]) -> _T:
        """Run `work` on the browser's loop and wait for it, from any thread."""
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    async def _start(self) -> None:
        self._pages = asyncio.Semaphore(self._settings.crawl_browser_pages)
        self._relaunching = asyncio.Lock()
        self._playwright = await async_playwright().start()
        await self._launch()

    async def _launch(self) -> None:
        self._browser = await self._playwright.chromium.launch(
            executable_path=str(self._settings.chromium_path), headless=True, args=list(CHROMIUM_ARGS)
        )
        self._context = await self._browser.new_context(
            user_agent=identity.user_agent(self._settings.user_agent, self._settings.crawl_contact_url)
        )
        log.info(
            "browser.launched",
            chromium=str(self._settings.chromium_path),
            version=self._browser.version,
            pages=self._settings.crawl_browser_pages,
        )

    def load(self, url: str, headers: Mapping[str, str]) -> Loaded:
        """Render `url`; `headers` (conditional ones) go on its navigation request only. A 304 or a redirect comes
        back as such, with an empty page, for the crawler to act on."""
        return self._call(self._load(url, headers))

    async def _load(self, url: str, headers: Mapping[str, str]) -> Loaded:
        async with self._pages:
            async with self._relaunching:
                if not self._browser.is_connected():  # Chromium crashed or was killed: start a new one
                    log.warning("browser.disconnected")
                    await self._launch()
            return await self._render(url, headers)

    async def _render(self, url: str, headers: Mapping[str, str]) -> Loaded:
        timeout_s = self._settings.fetch_timeout_s
        page = await self._context.new_page()
        navigation = _Navigation(headers, timeout_s, self._blocked)
        await page.route("**/*", navigation.handle)
        started = time.monotonic()
        try:
            response = await page.goto(url, wait_until="load", timeout=timeout_s * 1000)
            if response is None:
                raise FetchError(f"no response for {url}", transient=True, error_type="NoResponse")
            return Loaded(
                final_url=page.url,
                status=response.status,
                content_type=response.headers.get("content-type", ""),
                html=await page.content(),
                elapsed_ms=int((time.monotonic() - started) * 1000),
                headers=response.headers,
            )
        except PlaywrightTimeoutError as exc:
            raise FetchError(f"load timed out after {timeout_s:g}s", transient=True, error_type="Timeout") from exc
        except PlaywrightError as exc:
            if navigation.answered is not None:  # the navigation was aborted on purpose: nothing to render
                return Loaded(
                    final_url=navigation.answered.url,
                    status=navigation.answered.status,
                    content_type="",
                    html="",
                    elapsed_ms=int((time.monotonic() - started) * 1000),
                    headers=navigation.answered.headers,
                )
            message = exc.message.splitlines()[0] if exc.message else repr(exc)
            if "Download is starting" in message:  # Chromium downloads what it cannot render
                raise FetchError(
                    f"not an HTML page (the browser started a download): {url}", transient=False, error_type="NotHtml"
                ) from exc
            raise FetchError(f"network error: {message}", transient=True, error_type="NetworkError") from exc
        finally:
            await page.close()

    def close(self) -> None:
        try:
            self._call(self._close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    async def _close(self) -> None:
        try:
            await self._context.close()
            await self._browser.close()
        finally:
            await self._playwright.stop()


class _Navigation:
    """Routes every request of a page.

    The page's own navigation is requested here (`route.fetch`, no redirect followed) with the
    conditional headers: a redirect or a 304 is kept and the navigation aborted (Chromium would
    follow the one at once and abort the other without a cached copy); any other answer is handed
    to the page as it came. Requests of a blocked resource type, and the favicon, are aborted.
    """

    def __init__(self, headers: Mapping[str, str], timeout_s: float, blocked: frozenset[str]) -> None:
        self._headers = dict(headers)
        self._timeout_ms = timeout_s * 1000
        self._blocked = blocked
        self.answered: APIResponse | None = None  # the redirect or 304 that ended the navigation

    async def handle(self, route: Route) -> None:
        request = route.request
        if request.is_navigation_request() and request.frame.parent_frame is None:
            response = await route.fetch(
                headers={**request.headers, **self._headers}, max_redirects=0, timeout=self._timeout_ms
            )
            if response.status == 304 or (300 <= response.status < 400 and "location" in response.headers):
                self.answered = response
                await route.abort()
            else:
                await route.fulfill(response=response)
        elif request.resource_type in self._blocked or urlsplit(request.url).path == "/favicon.ico":
            await route.abort("blockedbyclient")
        else:
            await route.continue_()
