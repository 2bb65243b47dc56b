"""Local test web sites for the crawler: each `Site` is one origin (its own 127.0.0.1 port).

A site is a table of routes: path -> a function of how many times the path was
requested before and of the request's headers (lowercase names), returning
(status, headers, body). That is enough to script the
misbehaviour a crawler meets: 429 then 200, 503 with Retry-After, slow, huge,
redirect loops, broken charsets. Every request's path, headers and arrival is kept, when
its answer was ready, and how many requests the site had in flight at most.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Hit", "Response", "Route", "Site", "fixed", "html_page", "http_date", "serve", "slow", "then"]

Response = tuple[int, dict[str, str], bytes]
Route = Callable[[int, dict[str, str]], Response]


@dataclass(frozen=True)
class Hit:
    path: str
    headers: dict[str, str]
    at: float  # time.monotonic() on arrival


@dataclass
class Site:
    routes: dict[str, Route]
    server: ThreadingHTTPServer | None = None
    hits: list[Hit] = field(default_factory=list)
    answered: list[Hit] = field(default_factory=list)  # `at`: when the answer was ready
    max_in_flight: int = 0
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    def hits_of(self, path: str) -> list[Hit]:
        with self._lock:
            return [hit for hit in self.hits if hit.path == path]

    def _answer(self, path: str, headers: dict[str, str]) -> Response:
        with self._lock:
            before = Counter(hit.path for hit in self.hits)[path]
            self.hits.append(Hit(path, headers, time.monotonic()))
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        route = self.routes.get(path)
        try:
            return route(before, headers) if route else (404, {"Content-Type": "text/plain"}, b"not found")
        finally:
            with self._lock:
                self._in_flight -= 1
                self.answered.append(Hit(path, headers, time.monotonic()))


def html_page(title: str, *links: str, body: str = "", charset: str = "utf-8") -> Response:
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    text = f"<!doctype html><html><head><title>{title}</title></head><body><h1>{title}</h1>{body}<ul>{anchors}</ul></body></html>"
    return 200, {"Content-Type": f"text/html; charset={charset}"}, text.encode(charset)


def fixed(response: Response) -> Route:
    return lambda before, headers: response


def slow(seconds: float, response: Response) -> Route:
    def route(before: int, headers: dict[str, str]) -> Response:
        time.sleep(seconds)
        return response

    return route


def then(first: Response, times: int, after: Response) -> Route:
    """`first` for the first `times` requests, `after` from then on."""
    return lambda before, headers: first if before < times else after


def http_date(seconds_from_now: float) -> str:
    return formatdate(time.time() + seconds_from_now, usegmt=True)


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, headers, body = site._answer(self.path, {k.lower(): v for k, v in self.headers.items()})
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the crawler gave up on a slow or huge answer
                pass

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def serve(*sites: Site) -> Iterator[tuple[Site, ...]]:
    """Serve every site on its own port (its own origin) until the block ends."""
    threads = []
    for site in sites:
        site.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
        site.server.daemon_threads = True
        thread = threading.Thread(target=site.server.serve_forever, name=f"test-site-{site.url}", daemon=True)
        thread.start()
        threads.append(thread)
    try:
        yield sites
    finally:
        for site, thread in zip(sites, threads, strict=True):
            assert site.server is not None
            site.server.shutdown()
            site.server.server_close()
            thread.join()
