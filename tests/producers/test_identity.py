"""The crawler's User-Agent: the product token, plus the operator's contact URL only when one is configured."""

from __future__ import annotations

from structlog.testing import capture_logs

from ctrlgpt.settings import Settings
from producers import crawler
from producers.identity import user_agent


def test_the_contact_url_follows_the_product_in_the_crawlers_convention() -> None:
    assert user_agent("ctrlgpt-crawler/0.1", "https://crawl.example.org/about") == (
        "ctrlgpt-crawler/0.1 (+https://crawl.example.org/about)"
    )


def test_without_a_contact_the_user_agent_is_the_product_alone() -> None:
    assert user_agent("ctrlgpt-crawler/0.1", None) == "ctrlgpt-crawler/0.1"
    assert user_agent("ctrlgpt-crawler/0.1", "") == "ctrlgpt-crawler/0.1"


def test_no_contact_address_is_made_up_by_default() -> None:
    settings = Settings()
    assert settings.crawl_contact_url is None
    assert "http" not in settings.user_agent and "@" not in settings.user_agent


def test_a_crawl_without_a_contact_warns_at_start() -> None:
    with capture_logs() as logs:
        crawler.log_identity(Settings(crawl_contact_url=None))
    (event,) = logs
    assert event["event"] == "crawler.no_contact_url" and event["log_level"] == "warning"
    assert event["user_agent"] == "ctrlgpt-crawler/0.1" and "CTRLGPT_CRAWL_CONTACT_URL" in event["why"]


def test_a_crawl_with_a_contact_says_how_it_introduces_itself() -> None:
    with capture_logs() as logs:
        crawler.log_identity(Settings(crawl_contact_url="https://crawl.example.org/about"))
    assert logs == [
        {
            "event": "crawler.identity",
            "log_level": "info",
            "user_agent": "ctrlgpt-crawler/0.1 (+https://crawl.example.org/about)",
        }
    ]
