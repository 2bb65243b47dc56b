"""/v1/admin/crawls without the broker: bad requests are refused before Kafka."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "body",
    [
        {"urls": []},
        {"urls": ["ftp://example.org/"]},
        {"urls": ["http://example.org/"], "fetch_mode": "telnet"},
        {"urls": ["http://example.org/"], "max_depth": -1},
    ],
)
def test_bad_bodies_are_422(admin_client, admin_key, body):
    response = admin_client.post("/v1/admin/crawls", headers={"X-API-Key": admin_key}, json=body)
    assert response.status_code == 422, response.text
