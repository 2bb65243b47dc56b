"""/v1/admin/models without the broker: bad requests, unknown or unfit versions (all refused before Kafka)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from registry_versions import add_version

from api.main import create_app
from models import operations
from models.registry import version_id


@pytest.fixture
def registry(admin_settings):
    return operations.registry_for(admin_settings)


def test_each_target_has_its_own_registry(admin_settings, admin_key, registry):
    two = admin_settings.model_copy(update={"targets": "positive,negative"})
    registry.promote(add_version(registry, 1), "first")
    with TestClient(create_app(two, follow_updates=False), headers={"X-API-Key": admin_key}) as client:
        models = client.get("/v1/admin/models").json()["models"]
        assert [(m["target"], len(m["versions"])) for m in models] == [("positive", 1), ("negative", 0)]
        assert models[1]["model_name"] == two.policy_for("negative")
        only = client.get("/v1/admin/models", params={"target": "negative"}).json()["models"]
        assert [m["target"] for m in only] == ["negative"]
        assert client.get("/v1/admin/models", params={"target": "sarcastic"}).status_code == 422
        response = client.post(
            "/v1/admin/models/rollback", json={"version": registry.versions()[0], "target": "negative"}
        )
        assert response.status_code == 404


def test_unknown_versions_are_404(admin_client, admin_key, registry):
    auth = {"X-API-Key": admin_key}
    registry.promote(add_version(registry, 1), "first")
    assert admin_client.post(f"/v1/admin/models/{version_id(5, 'x')}/pin", headers=auth).status_code == 404
    assert admin_client.post("/v1/admin/models/..%2F..%2Fetc/pin", headers=auth).status_code == 404
    response = admin_client.post("/v1/admin/models/rollback", headers=auth, json={"version": version_id(5, "x")})
    assert response.status_code == 404 and "no version" in response.json()["detail"]


def test_rolling_back_to_a_version_never_promoted_is_409(admin_client, admin_key, registry):
    rejected = add_version(registry, 1)
    registry.reject(rejected, "worse")
    registry.promote(add_version(registry, 2), "ok")
    response = admin_client.post(
        "/v1/admin/models/rollback", headers={"X-API-Key": admin_key}, json={"version": rejected}
    )
    assert response.status_code == 409 and "rejected" in response.json()["detail"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/admin/models/rollback", {}),
        ("/v1/admin/models/rollback", {"version": 3}),
        ("/v1/admin/models/rollback", {"version": "v0001-00000000", "extra": 1}),
    ],
)
def test_bad_bodies_are_422(admin_client, admin_key, path, body):
    response = admin_client.post(path, headers={"X-API-Key": admin_key}, json=body)
    assert response.status_code == 422, response.text


def test_a_registry_with_a_corrupt_manifest_or_a_dangling_pointer_is_409_not_500(admin_settings, admin_key, registry):
    first = add_version(registry, 1)
    registry.promote(first, "first")
    (registry.path(first) / "manifest.json").write_text("{not json")
    with TestClient(create_app(admin_settings, follow_updates=False), raise_server_exceptions=False) as client:
        corrupt = client.get("/v1/admin/models", headers={"X-API-Key": admin_key})
        (registry.root / "CURRENT").write_text("v0009-00000000")
        dangling = client.get("/v1/admin/models", headers={"X-API-Key": admin_key})
    assert corrupt.status_code == 409 and "inconsistent" in corrupt.json()["detail"], corrupt.text
    assert dangling.status_code == 409 and "inconsistent" in dangling.json()["detail"], dangling.text
