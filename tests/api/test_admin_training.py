"""/v1/admin/training without the broker: bad requests are refused before Kafka."""

from __future__ import annotations


def test_a_reason_too_long_is_422(admin_client, admin_key):
    response = admin_client.post("/v1/admin/training", headers={"X-API-Key": admin_key}, json={"reason": "x" * 5000})
    assert response.status_code == 422, response.text
