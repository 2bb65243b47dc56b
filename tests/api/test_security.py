"""The admin key: every admin endpoint refuses a request without it, takes it as a header or a bearer token."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from registry_versions import add_version

from api.main import create_app
from models import operations

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
def test_every_endpoint_needs_the_admin_key(admin_client, admin_key, method, path, body, headers):
    response = admin_client.request(method, path, json=body, headers=headers)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


def test_the_key_is_taken_as_a_header_or_a_bearer_token(admin_client, admin_key, admin_settings):
    registry = operations.registry_for(admin_settings)
    first = add_version(registry, 1)
    registry.promote(first, "first")
    for headers in ({"X-API-Key": admin_key}, {"Authorization": f"Bearer {admin_key}"}):
        response = admin_client.get("/v1/admin/models", headers=headers)
        assert response.status_code == 200, response.text
    [listed] = response.json()["models"]
    assert (listed["target"], listed["current"], listed["pinned"]) == ("positive", first, None)
    assert [(v["version"], v["status"], v["current"]) for v in listed["versions"]] == [(first, "promoted", True)]


def test_the_key_is_read_once_when_the_app_is_built(admin_settings):
    app = create_app(admin_settings, follow_updates=False)
    key = app.state.admin_key
    admin_settings.secrets_file.unlink()  # a key created after the app was built is not the one it checks
    with TestClient(app) as client:
        assert client.get("/v1/admin/models", headers={"X-API-Key": key}).status_code == 200
