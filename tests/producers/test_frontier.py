"""The frontier's pure rules: normalization, scope, links, robots.txt, verdicts, next requests."""

from __future__ import annotations

import pytest

from producers import frontier
from producers.frontier import Verdict
from streams.records import CrawlRequested


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("HTTP://Example.COM/a/b?x=1#top", "http://example.com/a/b?x=1"),
        ("http://example.com:80/", "http://example.com/"),
        ("https://example.com:443/p", "https://example.com/p"),
        ("https://example.com:8443/p", "https://example.com:8443/p"),
        ("http://example.com", "http://example.com/"),
        ("http://example.com/s?b=2&a=1&a=0", "http://example.com/s?b=2&a=1&a=0"),
        ("http://example.com/s?flag", "http://example.com/s?flag"),
        ("http://example.com/s?empty=&z=1", "http://example.com/s?empty=&z=1"),
        ("  http://example.com/Path/Keeps/Case  ", "http://example.com/Path/Keeps/Case"),
        ("http://example.com/a/./b/../c/", "http://example.com/a/c/"),
        ("http://example.com/../../a/..", "http://example.com/"),
        ("http://example.com//double/./x", "http://example.com//double/x"),
        ("http://example.com/café crème?q=ü", "http://example.com/caf%C3%A9%20cr%C3%A8me?q=%C3%BC"),
        ("http://example.com/caf%c3%a9", "http://example.com/caf%c3%a9"),
    ],
)
def test_normalize_url_gives_the_form_to_fetch(raw: str, normalized: str) -> None:
    assert frontier.normalize_url(raw) == normalized


@pytest.mark.parametrize(
    "spellings",
    [
        ["http://example.com/s?flag", "http://example.com/s?flag="],
        ["http://example.com/a/./b/../c", "http://example.com/a/c", "HTTP://EXAMPLE.com:80/a/x/../c#part"],
        ["http://example.com/café", "http://example.com/caf%C3%A9", "http://example.com/caf%c3%a9"],
        ["http://example.com/s?b=2&a=1", "http://example.com/s?a=1&b=2"],
    ],
)
def test_spellings_of_one_page_have_one_canonical_url(spellings: list[str]) -> None:
    assert len({frontier.canonical_url(url) for url in spellings}) == 1


def test_different_pages_keep_different_canonical_urls() -> None:
    urls = ["http://example.com/a", "http://example.com/A", "http://example.com/a?x=1", "http://example.com/a/"]
    assert len({frontier.canonical_url(url) for url in urls}) == len(urls)


@pytest.mark.parametrize(
    "bad", ["mailto:a@example.com", "ftp://example.com/x", "/relative/path", "javascript:void(0)", "http://"]
)
def test_normalize_refuses_what_is_not_an_http_page(bad: str) -> None:
    with pytest.raises(ValueError, match="http"):
        frontier.normalize_url(bad)


@pytest.mark.parametrize(
    "bad",
    [
        "http://exa mple.test/",
        "http://a..b/",
        "http://-a.test/",
        "http://a.test:0/",
        "http://a.test:99999/",
        "http://[::zz]/",
    ],
)
def test_normalize_refuses_an_invalid_host_or_port(bad: str) -> None:
    with pytest.raises(ValueError, match="(?i)invalid"):
        frontier.normalize_url(bad)


def test_normalize_keeps_real_world_hosts() -> None:
    assert frontier.normalize_url("http://my_host.test:8080/") == "http://my_host.test:8080/"
    assert frontier.normalize_url("http://bücher.test/") == "http://xn--bcher-kva.test/"
    assert frontier.normalize_url("http://[::1]:8000/") == "http://[::1]:8000/"


def test_normalize_is_idempotent() -> None:
    once = frontier.normalize_url("HTTPS://Shop.Example.com:443/a/../items/café?sort=price&page=2#reviews")
    assert frontier.normalize_url(once) == once == "https://shop.example.com/items/caf%C3%A9?sort=price&page=2"
    canonical = frontier.canonical_url(once)
    assert frontier.canonical_url(canonical) == canonical


def test_origin_and_robots_url() -> None:
    assert frontier.origin_of("HTTP://Example.com:80/a?b=c") == "http://example.com"
    assert frontier.robots_url("http://127.0.0.1:8090/articles/x.html") == "http://127.0.0.1:8090/robots.txt"


def _request(url: str, **fields: object) -> CrawlRequested:
    return CrawlRequested(url=url, crawl_id="c1", **fields)


def test_a_seed_is_scoped_to_its_host_plus_allowed_domains() -> None:
    assert frontier.scope_domains(_request("http://News.example.com/")) == ["news.example.com"]
    seed = _request("http://news.example.com/", allowed_domains=["Cdn.Example.org."])
    assert frontier.scope_domains(seed) == ["news.example.com", "cdn.example.org"]


def test_a_link_request_carries_its_seeds_scope() -> None:
    link = _request(
        "http://cdn.example.org/x", source="link", depth=1, allowed_domains=["news.example.com", "cdn.example.org"]
    )
    assert frontier.scope_domains(link) == ["news.example.com", "cdn.example.org"]


def test_in_scope_by_host_subdomain_and_depth() -> None:
    domains = ["example.com"]
    assert frontier.in_scope("http://example.com/a", domains, depth=1, max_depth=2)
    assert frontier.in_scope("https://www.example.com/a", domains, depth=2, max_depth=2)
    assert not frontier.in_scope("http://example.com/a", domains, depth=3, max_depth=2)
    assert not frontier.in_scope("http://notexample.com/a", domains, depth=1, max_depth=2)
    assert not frontier.in_scope("http://example.com.evil.org/a", domains, depth=1, max_depth=2)


def test_extract_links_resolves_normalizes_and_keeps_only_http() -> None:
    html = """<html><body>
      <a href="/about">About</a>
      <a href="contact.html#form">Contact</a>
      <a href="../up.html">Up</a>
      <a href="HTTPS://Other.example.org:443/x?b=1&a=2">Other</a>
      <a href="/about#team">About again</a>
      <a href="#top">Top</a>
      <a href="mailto:editor@example.com">Mail</a>
      <a href="javascript:void(0)">Menu</a>
      <a href="ftp://files.example.com/f">FTP</a>
      <a>No href</a>
      <map><area href="/map-area.html"></map>
    </body></html>"""
    assert frontier.extract_links(html, "http://example.com/dir/page.html") == [
        "http://example.com/about",
        "http://example.com/dir/contact.html",
        "http://example.com/up.html",
        "https://other.example.org/x?b=1&a=2",
        "http://example.com/map-area.html",
    ]


def test_extract_links_keeps_one_spelling_per_page() -> None:
    html = '<a href="/café?flag">1</a><a href="/caf%C3%A9?flag=">2</a><a href="/x/../caf%c3%a9?flag">3</a>'
    assert frontier.extract_links(html, "http://example.com/") == ["http://example.com/caf%C3%A9?flag"]


def test_extract_links_honours_base_href() -> None:
    html = '<html><head><base href="http://cdn.example.com/docs/"></head><body><a href="guide.html">g</a></body></html>'
    assert frontier.extract_links(html, "http://example.com/") == ["http://cdn.example.com/docs/guide.html"]


@pytest.mark.parametrize("html", ["", "   ", "<html></html>"])
def test_extract_links_of_an_empty_page_is_empty(html: str) -> None:
    assert frontier.extract_links(html, "http://example.com/") == []


ROBOTS = """
User-agent: *
Disallow: /private/
Crawl-delay: 3

User-agent: badbot
Disallow: /
"""


def test_robots_disallows_a_path_and_gives_the_crawl_delay() -> None:
    rules = frontier.parse_robots(200, ROBOTS)
    ua = "ctrlgpt-crawler/0.1 (+https://github.com/ctrlgpt)"
    assert frontier.robots_decision(rules, ua, "http://example.com/articles/a.html") == frontier.RobotsDecision(
        True, 3.0
    )
    assert not frontier.robots_decision(rules, ua, "http://example.com/private/staff.html").allowed
    assert not frontier.robots_decision(rules, "badbot/1.0", "http://example.com/articles/a.html").allowed


# RFC 9309 cases urllib.robotparser gets wrong (issue 16).
def test_robots_the_longest_match_wins_over_the_first() -> None:
    rules = frontier.parse_robots(200, "User-agent: *\nDisallow: /\nAllow: /public/\n")
    assert frontier.robots_decision(rules, "ctrlgpt-crawler/0.1", "http://example.com/public/a").allowed
    assert not frontier.robots_decision(rules, "ctrlgpt-crawler/0.1", "http://example.com/private/a").allowed


def test_robots_wildcards_and_end_anchor() -> None:
    rules = frontier.parse_robots(200, "User-agent: *\nDisallow: /*.pdf$\n")
    assert not frontier.robots_decision(rules, "ctrlgpt-crawler/0.1", "http://example.com/a/b.pdf").allowed
    assert frontier.robots_decision(rules, "ctrlgpt-crawler/0.1", "http://example.com/a/b.pdf?page=2").allowed
    assert frontier.robots_decision(rules, "ctrlgpt-crawler/0.1", "http://example.com/a/b.html").allowed


def test_robots_fractional_crawl_delay() -> None:
    rules = frontier.parse_robots(200, "User-agent: *\nCrawl-delay: 2.5\n")
    assert frontier.robots_decision(rules, "ctrlgpt-crawler/0.1", "http://example.com/").crawl_delay_s == 2.5


def test_robots_group_of_the_crawlers_product_token_applies() -> None:
    rules = frontier.parse_robots(200, "User-agent: ctrlgpt-crawler\nDisallow: /x\n\nUser-agent: *\nDisallow: /\n")
    ua = "ctrlgpt-crawler/0.1 (+https://crawl.example.org/about)"
    assert frontier.robots_decision(rules, ua, "http://example.com/y").allowed
    assert not frontier.robots_decision(rules, ua, "http://example.com/x").allowed


def test_robots_without_crawl_delay() -> None:
    rules = frontier.parse_robots(200, "User-agent: *\nDisallow:\n")
    assert frontier.robots_decision(rules, "ctrlgpt", "http://example.com/x") == frontier.RobotsDecision(True, None)


@pytest.mark.parametrize("status", [401, 403, 404, 410])
def test_a_missing_robots_txt_allows_everything(status: int) -> None:
    rules = frontier.parse_robots(status, "Disallow: /")
    assert frontier.robots_decision(rules, "ctrlgpt", "http://example.com/private/x").allowed


def test_a_robots_txt_server_error_is_not_a_rule() -> None:
    with pytest.raises(ValueError, match="503"):
        frontier.parse_robots(503, "")


@pytest.mark.parametrize(
    ("status", "content_type", "verdict"),
    [
        (200, "text/html; charset=utf-8", Verdict.KEEP),
        (200, "application/xhtml+xml", Verdict.KEEP),
        (200, "application/pdf", Verdict.REJECT),
        (200, "", Verdict.REJECT),
        (404, "text/html", Verdict.REJECT),
        (403, "text/html", Verdict.REJECT),
        (429, "text/html", Verdict.RETRY),
        (500, "text/html", Verdict.RETRY),
        (503, "text/html", Verdict.RETRY),
    ],
)
def test_fetch_verdict(status: int, content_type: str, verdict: Verdict) -> None:
    got, why = frontier.fetch_verdict(status, content_type)
    assert got is verdict
    assert (str(status) in why) or ("not HTML" in why)


def test_next_requests_follow_new_in_scope_links_one_level_deeper() -> None:
    seed = _request("http://site.test/", max_depth=2)
    links = [
        "http://site.test/",
        "http://site.test/a",
        "http://site.test/b",
        "http://elsewhere.test/c",
        "http://site.test/b",
    ]
    wanted, cut = frontier.next_requests(
        seed, links, known={"http://site.test/a"}, requested_per_host={}, max_pages=100
    )
    assert cut == 0
    assert [r.url for r in wanted] == ["http://site.test/b"]
    assert all(r.depth == 1 and r.source == "link" and r.crawl_id == "c1" and r.max_depth == 2 for r in wanted)
    assert all(r.allowed_domains == ["site.test"] for r in wanted)


def test_next_requests_know_a_page_by_its_canonical_url() -> None:
    seed = _request("http://site.test/?flag", max_depth=2)
    links = ["http://site.test/?flag=", "http://site.test/s?flag", "http://site.test/s?flag=", "http://site.test/b"]
    known = {frontier.canonical_url("http://site.test/./b")}
    wanted, _ = frontier.next_requests(seed, links, known=known, requested_per_host={}, max_pages=100)
    assert [r.url for r in wanted] == ["http://site.test/s?flag"]


def test_next_requests_stop_at_max_depth() -> None:
    deep = _request("http://site.test/a", depth=2, max_depth=2, source="link", allowed_domains=["site.test"])
    assert frontier.next_requests(deep, ["http://site.test/b"], known=set(), requested_per_host={}, max_pages=100) == (
        [],
        0,
    )


def test_next_requests_respect_the_page_budget_per_host() -> None:
    seed = _request("http://site.test/", allowed_domains=["other.test"])
    links = ["http://site.test/1", "http://site.test/2", "http://site.test/3", "http://other.test/1"]
    wanted, cut = frontier.next_requests(seed, links, known=set(), requested_per_host={"site.test": 1}, max_pages=2)
    assert [r.url for r in wanted] == ["http://site.test/1", "http://other.test/1"]
    assert cut == 2


def test_next_requests_carry_the_crawl_fetch_mode_and_page_cap() -> None:
    seed = _request("http://site.test/", fetch_mode="http", max_pages=7)
    wanted, _ = frontier.next_requests(seed, ["http://site.test/a"], known=set(), requested_per_host={}, max_pages=7)
    assert [(r.fetch_mode, r.max_pages) for r in wanted] == [("http", 7)]
