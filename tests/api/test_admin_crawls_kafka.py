"""/v1/admin/crawls against the real broker: the seeds it publishes, read back from a topic of the test's own."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from topic_reader import read_records

from api.main import create_app
from api.routes import admin_crawls
from ctrlgpt import secrets
from streams import bus
from streams.records import CrawlRequested
from streams.topics import Topic

pytestmark = pytest.mark.integration


@pytest.fixture
def topic(settings) -> Topic:
    made = Topic(f"ctrlgpt.test.admin.crawls.{uuid.uuid4().hex[:12]}", CrawlRequested, key="url", partitions=1)
    bus.ensure_topics(settings, [made])
    return made


@pytest.fixture
def client(settings, tmp_path, topic):
    local = settings.model_copy(update={"data_dir": tmp_path})
    app = create_app(local, follow_updates=False)
    app.dependency_overrides[admin_crawls.crawl_requests_topic] = lambda: topic
    with TestClient(app, headers={"X-API-Key": secrets.load_or_create(local.secrets_file).api_admin_key}) as client:
        yield client


def read_all(settings, topic: Topic, count: int) -> list:
    return read_records(settings, topic, until=lambda found: len(found) >= count)


def test_crawls_are_seeded_as_api_requests(client, settings, topic):
    body = {
        "urls": ["http://127.0.0.1:9/a", "http://127.0.0.1:9/a", "http://127.0.0.1:9/b"],
        "max_depth": 1,
        "allowed_domains": ["Example.org."],
        "fetch_mode": "http",
        "max_pages": 5,
    }
    response = client.post("/v1/admin/crawls", json=body)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert len(accepted["urls"]) == 2

    seeds = read_all(settings, topic, 2)
    assert sorted(s.url for s in seeds) == sorted(accepted["urls"])
    assert {(s.source, s.crawl_id, s.depth, s.max_depth, s.fetch_mode, s.max_pages) for s in seeds} == {
        ("api", accepted["crawl_id"], 0, 1, "http", 5)
    }
    assert seeds[0].allowed_domains == ["example.org"]
