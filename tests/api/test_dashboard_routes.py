"""The dashboard's page, assets and JSON routes, without a broker."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.main import create_app


def test_page_and_assets_are_served_and_nothing_else(api_settings) -> None:
    with TestClient(create_app(api_settings, follow_updates=False)) as client:
        page = client.get("/dashboard")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<script src="/dashboard/dashboard.js">' in page.text
        assert client.get("/dashboard/dashboard.js").headers["content-type"].startswith("text/javascript")
        assert client.get("/dashboard/dashboard.css").headers["content-type"].startswith("text/css")
        assert client.get("/dashboard/dashboard.html").status_code == 404
        assert client.get("/dashboard/..%2Fmain.py").status_code == 404


def test_ops_json_says_when_this_app_does_not_monitor_kafka(api_settings) -> None:
    with TestClient(create_app(api_settings, follow_updates=False)) as client:
        for path in ("/v1/ops/lag-history", "/v1/ops/summary"):
            response = client.get(path)
            assert response.status_code == 503
            assert "does not monitor Kafka" in response.json()["detail"]
