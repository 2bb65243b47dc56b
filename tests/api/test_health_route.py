"""GET /health and GET /v1/models/current name what this replica serves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from api.main import create_app
from api.serving.served_model import Fallback, ModelHolder, PendingUpdate


def test_health_and_current_model_describe_the_served_version(api_settings, v2):
    holder = ModelHolder()
    served = v2.load()
    holder.swap(served)
    with TestClient(create_app(api_settings, holder=holder, follow_updates=False)) as client:
        assert client.get("/health").json() == {
            "status": "ok",
            "model_version": "v2",
            "targets": {"positive": "v2"},
            "fallbacks": {},
            "pending_updates": {},
        }
        current = client.get("/v1/models/current").json()
    assert current["version"] == "v2"
    assert current["parent_version"] == "v1"
    assert current["model_name"] == "expansion-policy"
    assert current["metrics"] == {"reward_mean": 0.25, "kl": 0.01}
    assert datetime.fromisoformat(current["loaded_at"]) == served.loaded_at


def test_every_target_is_reported_and_the_current_model_of_each_can_be_asked_for(api_settings, v2):
    settings = api_settings.model_copy(update={"targets": "positive,negative"})
    positive = ModelHolder()
    positive.swap(v2.load())
    with TestClient(create_app(settings, holder=positive, follow_updates=False)) as client:
        assert client.get("/health").json()["targets"] == {"positive": "v2", "negative": None}
        assert client.get("/v1/models/current", params={"target": "positive"}).json()["version"] == "v2"
        waiting = client.get("/v1/models/current", params={"target": "negative"})
        unknown = client.get("/v1/models/current", params={"target": "neutral"})
    assert waiting.status_code == 503 and "negative" in waiting.json()["detail"]
    assert unknown.status_code == 422 and "neutral" in unknown.json()["detail"]


def test_health_says_when_a_fallback_serves_in_place_of_a_refused_version(api_settings, v1, v2):
    holder = ModelHolder()
    holder.swap(v1.load(), fallback=Fallback(refused_version="v2", reason="v2 refused: ChecksumMismatch"))
    with TestClient(create_app(api_settings, holder=holder, follow_updates=False)) as client:
        assert client.get("/health").json() == {
            "status": "fallback",
            "model_version": "v1",
            "targets": {"positive": "v1"},
            "fallbacks": {
                "positive": {"version": "v1", "refused_version": "v2", "reason": "v2 refused: ChecksumMismatch"}
            },
            "pending_updates": {},
        }
        holder.swap(v2.load())  # a version that loads the ordinary way ends the fallback
        assert client.get("/health").json()["status"] == "ok"
        assert client.get("/health").json()["fallbacks"] == {}


def test_health_says_when_an_announced_version_waits_for_the_model_store(api_settings, v1):
    holder = ModelHolder()
    holder.swap(v1.load())
    since = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
    holder.set_pending(
        PendingUpdate(
            version="v2",
            reason="fetching s3://models/v2: unavailable (EndpointConnectionError)",
            since=since,
            attempts=3,
            next_attempt_at=since + timedelta(seconds=4),
        )
    )
    with TestClient(create_app(api_settings, holder=holder, follow_updates=False)) as client:
        health = client.get("/health").json()
        assert (health["status"], health["model_version"]) == ("ok", "v1")  # v1 keeps serving: not a failure
        pending = health["pending_updates"]["positive"]
        assert (pending["version"], pending["attempts"]) == ("v2", 3)
        assert "EndpointConnectionError" in pending["reason"]
        assert datetime.fromisoformat(pending["since"]) == since
        assert datetime.fromisoformat(pending["next_attempt_at"]) == since + timedelta(seconds=4)
        holder.set_pending(None)  # the store came back and the version loaded (or was refused)
        assert client.get("/health").json()["pending_updates"] == {}
