"""The local demo website the loop crawls: 30 articles behind realistic page boilerplate.

Serves `/`, `/articles/<slug>.html`, `/robots.txt` (everything but `/private/` allowed),
a staff page under `/private/` that a polite crawler never fetches, and
`/articles/broken.html`, linked from the index, which always answers 500 so that
the crawler's retry-then-dead-letter path is exercised.
"""

from __future__ import annotations

import argparse
import json
import threading
from dataclasses import dataclass
from html import escape
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from string import Template
from urllib.parse import urljoin, urlsplit

import structlog

from ctrlgpt.lifecycle import stop_on_signals
from ctrlgpt.settings import Settings

__all__ = ["Article", "DemoSite", "article_url", "load_articles", "main", "render_article", "render_index", "serve"]

log = structlog.get_logger()

SITE_DIR = Path(__file__).with_name("demo_site")
ARTICLES_FILE = SITE_DIR / "articles.json"
BROKEN_SLUG = "broken"
PRIVATE_PATH = "/private/staff.html"
ROBOTS_TXT = "User-agent: *\nDisallow: /private/\nCrawl-delay: 0\n"
_AUTHORS = ("Maya Lindqvist", "Tomás Herrera", "Grace Okonjo", "Peter Wallace", "Ines Duarte", "Hiro Tanaka")


@dataclass(frozen=True)
class Article:
    slug: str
    title: str
    summary: str
    sentiment: str
    topic: str
    paragraphs: tuple[str, ...]


def load_articles(path: Path = ARTICLES_FILE) -> list[Article]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return [Article(**{**item, "paragraphs": tuple(item["paragraphs"])}) for item in raw]


def article_url(base_url: str, slug: str) -> str:
    """Absolute URL of an article; `base_url` is the site root, with or without its trailing slash."""
    return urljoin(base_url.rstrip("/") + "/", f"articles/{slug}.html")


def _page(*, title: str, description: str, canonical: str, main: str, sidebar: str, topics: list[str]) -> str:
    sections = "\n".join(f'    <a href="/#{_anchor(t)}">{escape(t.title())}</a>' for t in topics)
    template = Template((SITE_DIR / "page.html").read_text(encoding="utf-8"))
    return template.substitute(
        title=escape(title),
        description=escape(description),
        canonical=escape(canonical),
        sections=sections,
        main=main,
        sidebar=sidebar,
    )


def _anchor(topic: str) -> str:
    return topic.lower().replace(" ", "-")


def _topics(articles: list[Article]) -> list[str]:
    return list(dict.fromkeys(a.topic for a in articles))


def _link_list(heading: str, articles: list[Article]) -> str:
    items = "\n".join(f'        <li><a href="/articles/{a.slug}.html">{escape(a.title)}</a></li>' for a in articles)
    return (
        f"      <section>\n        <h3>{escape(heading)}</h3>\n        <ul>\n{items}\n        </ul>\n      </section>"
    )


def render_index(articles: list[Article]) -> str:
    topics = _topics(articles)
    blocks = []
    for topic in topics:
        items = "\n".join(
            f'        <li><h3><a href="/articles/{a.slug}.html">{escape(a.title)}</a></h3><p>{escape(a.summary)}</p></li>'
            for a in articles
            if a.topic == topic
        )
        blocks.append(
            f'      <section id="{_anchor(topic)}">\n        <h2>{escape(topic.title())}</h2>\n'
            f"        <ul>\n{items}\n        </ul>\n      </section>"
        )
    live = (
        '      <section class="live">\n        <h2>Live</h2>\n'
        f'        <p><a href="/articles/{BROKEN_SLUG}.html">Live updates: council budget vote</a></p>\n      </section>'
    )
    main = "      <h1>The Daily Lantern</h1>\n" + live + "\n" + "\n".join(blocks)
    return _page(
        title="The Daily Lantern: reviews, travel and local news",
        description="Reviews, travel stories, sport, culture and local news.",
        canonical="/",
        main=main,
        sidebar=_link_list("Most read", articles[:5]),
        topics=topics,
    )


def render_article(article: Article, articles: list[Article]) -> str:
    index = articles.index(article)
    related = [a for a in articles if a.topic == article.topic and a is not article]
    next_up = articles[(index + 1) % len(articles)]
    body = "\n".join(f"        <p>{escape(p)}</p>" for p in article.paragraphs)
    main = (
        f'      <p class="breadcrumb"><a href="/">Home</a> &rsaquo; '
        f'<a href="/#{_anchor(article.topic)}">{escape(article.topic.title())}</a></p>\n'
        f"      <h1>{escape(article.title)}</h1>\n"
        f'      <p class="byline">By {_AUTHORS[index % len(_AUTHORS)]} &middot; {(index % 27) + 1} March 2024 &middot; '
        f"{max(1, sum(len(p.split()) for p in article.paragraphs) // 200)} min read</p>\n"
        f'      <p class="lead">{escape(article.summary)}</p>\n'
        f"      <article>\n{body}\n      </article>\n"
        '      <div class="share">Share this story: <a href="/#share">Email</a> <a href="/#share">Copy link</a></div>\n'
        f'      <p class="next">Read next: <a href="/articles/{next_up.slug}.html">{escape(next_up.title)}</a></p>'
    )
    sidebar = _link_list(f"More in {article.topic.title()}", related) + "\n" + _link_list("Most read", articles[:5])
    return _page(
        title=article.title,
        description=article.summary,
        canonical=f"/articles/{article.slug}.html",
        main=main,
        sidebar=sidebar,
        topics=_topics(articles),
    )


def _render_private(articles: list[Article]) -> str:
    return _page(
        title="Staff area",
        description="Internal pages for the editorial team.",
        canonical=PRIVATE_PATH,
        main="      <h1>Staff area</h1>\n      <p>Rota, drafts and expense forms. Robots are asked not to index this page.</p>",
        sidebar="",
        topics=_topics(articles),
    )


def _make_handler(articles: list[Article]) -> type[BaseHTTPRequestHandler]:
    by_slug = {a.slug: a for a in articles}

    class Handler(BaseHTTPRequestHandler):
        server_version = "DailyLantern/1.0"

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, render_index(articles))
            elif path == "/robots.txt":
                self._send(HTTPStatus.OK, ROBOTS_TXT, "text/plain; charset=utf-8")
            elif path == f"/articles/{BROKEN_SLUG}.html":
                self._send(
                    HTTPStatus.INTERNAL_SERVER_ERROR, "<h1>500 Internal Server Error</h1><p>The live blog is down.</p>"
                )
            elif path == PRIVATE_PATH:
                self._send(HTTPStatus.OK, _render_private(articles))
            elif path.startswith("/articles/") and path.endswith(".html") and path[10:-5] in by_slug:
                self._send(HTTPStatus.OK, render_article(by_slug[path[10:-5]], articles))
            else:
                self._send(HTTPStatus.NOT_FOUND, "<h1>404 Not Found</h1>")

        def _send(self, status: HTTPStatus, body: str, content_type: str = "text/html; charset=utf-8") -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("demo_site.request", client=self.client_address[0], line=format % args)

    return Handler


@dataclass
class DemoSite:
    """A running demo site; `stop()` shuts it down and waits for its thread."""

    server: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def serve(port: int, host: str = "127.0.0.1", articles: list[Article] | None = None) -> DemoSite:
    """Start the site in a background thread (port 0: any free port) and return its handle."""
    server = ThreadingHTTPServer((host, port), _make_handler(articles if articles is not None else load_articles()))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="demo-site", daemon=True)
    thread.start()
    return DemoSite(server, thread)


def main(settings: Settings, args: argparse.Namespace) -> int:
    stop = stop_on_signals()
    site = serve(settings.demo_site_port)
    log.info("demo_site.serving", url=site.url)
    stop.wait()
    site.stop()
    log.info("demo_site.stopped")
    return 0
