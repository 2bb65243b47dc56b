"""The admin API without the broker: the key, bad requests, unknown or unfit versions (all refused before Kafka)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from registry_versions import add_version

from api.main import create_app
from ctrlgpt import secrets
from models import operations
from models.registry import version_id


@pytest.fixture
def local(api_settings, tmp_path):
    return api_settings.model_copy(update={"data_dir": tmp_path})


@pytest.fixture
def client(local):
    with TestClient(create_app(local, follow_updates=False)) as client:
        yield client


@pytest.fixture
def key(local) -> str:
    return secrets.load_or_create(local.secrets_file).api_admin_key


@pytest.fixture
def registry(local):
    return operations.registry_for(local)


ENDPOINTS = [
    ("GET", "/v1/admin/models", None),
    ("POST", "/v1/admin/models/v0001-00000000/pin", {}),
    ("POST", "/v1/admin/models/rollback", {"version": "v0001-00000000"}),
    ("POST", "/v1/admin/models/reload", None),
    ("POST", "/v1/admin/training", {}),
    ("DELETE", "/v1/admin/training", None),
    ("POST", "/v1/admin/crawls", {"urls": ["http://127.0.0.1:9/"]}),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic d3Jvbmc="}],
    ids=["none", "wrong-header", "wrong-bearer", "other-scheme"],
)
def test_every_endpoint_needs_the_admin_key(client, key, method, path, body, headers):
    response = client.request(method, path, json=body, headers=headers)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


def test_the_key_is_taken_as_a_header_or_a_bearer_token(client, key, registry):
    first = add_version(registry, 1)
    registry.promote(first, "first")
    for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
        response = client.get("/v1/admin/models", headers=headers)
        assert response.status_code == 200, response.text
    [listed] = response.json()["models"]
    assert (listed["target"], listed["current"], listed["pinned"]) == ("positive", first, None)
    assert [(v["version"], v["status"], v["current"]) for v in listed["versions"]] == [(first, "promoted", True)]


def test_each_target_has_its_own_registry(local, key, registry):
    two = local.model_copy(update={"targets": "positive,negative"})
    registry.promote(add_version(registry, 1), "first")
    with TestClient(create_app(two, follow_updates=False), headers={"X-API-Key": key}) as client:
        models = client.get("/v1/admin/models").json()["models"]
        assert [(m["target"], len(m["versions"])) for m in models] == [("positive", 1), ("negative", 0)]
        assert models[1]["model_name"] == two.policy_for("negative")
        only = client.get("/v1/admin/models", params={"target": "negative"}).json()["models"]
        assert [m["target"] for m in only] == ["negative"]
        assert client.get("/v1/admin/models", params={"target": "sarcastic"}).status_code == 422
        response = client.post("/v1/admin/models/rollback", json={"version": registry.versions()[0], "target": "negative"})
        assert response.status_code == 404


def test_unknown_versions_are_404(client, key, registry):
    auth = {"X-API-Key": key}
    registry.promote(add_version(registry, 1), "first")
    assert client.post(f"/v1/admin/models/{version_id(5, 'x')}/pin", headers=auth).status_code == 404
    assert client.post("/v1/admin/models/..%2F..%2Fetc/pin", headers=auth).status_code == 404
    response = client.post("/v1/admin/models/rollback", headers=auth, json={"version": version_id(5, "x")})
    assert response.status_code == 404 and "no version" in response.json()["detail"]


def test_rolling_back_to_a_version_never_promoted_is_409(client, key, registry):
    rejected = add_version(registry, 1)
    registry.reject(rejected, "worse")
    registry.promote(add_version(registry, 2), "ok")
    response = client.post("/v1/admin/models/rollback", headers={"X-API-Key": key}, json={"version": rejected})
    assert response.status_code == 409 and "rejected" in response.json()["detail"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/admin/models/rollback", {}),
        ("/v1/admin/models/rollback", {"version": 3}),
        ("/v1/admin/models/rollback", {"version": "v0001-00000000", "extra": 1}),
        ("/v1/admin/training", {"reason": "x" * 5000}),
        ("/v1/admin/crawls", {"urls": []}),
        ("/v1/admin/crawls", {"urls": ["ftp://example.org/"]}),
        ("/v1/admin/crawls", {"urls": ["http://example.org/"], "fetch_mode": "telnet"}),
        ("/v1/admin/crawls", {"urls": ["http://example.org/"], "max_depth": -1}),
    ],
)
def test_bad_bodies_are_422(client, key, path, body):
    response = client.post(path, headers={"X-API-Key": key}, json=body)
    assert response.status_code == 422, response.text


def test_a_registry_with_a_corrupt_manifest_or_a_dangling_pointer_is_409_not_500(local, key, registry):
    first = add_version(registry, 1)
    registry.promote(first, "first")
    (registry.path(first) / "manifest.json").write_text("{not json")
    with TestClient(create_app(local, follow_updates=False), raise_server_exceptions=False) as client:
        corrupt = client.get("/v1/admin/models", headers={"X-API-Key": key})
        (registry.root / "CURRENT").write_text("v0009-00000000")
        dangling = client.get("/v1/admin/models", headers={"X-API-Key": key})
    assert corrupt.status_code == 409 and "inconsistent" in corrupt.json()["detail"], corrupt.text
    assert dangling.status_code == 409 and "inconsistent" in dangling.json()["detail"], dangling.text
