"""POST /generate: answers with the served version; bad input is a clear 4xx, never a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.main import create_app, max_body_bytes
from api.serving.served_model import ModelHolder


@pytest.fixture(scope="module")
def client(api_settings, v1):
    holder = ModelHolder()
    holder.swap(v1.load())
    with TestClient(create_app(api_settings, holder=holder, follow_updates=False)) as client:
        yield client


@pytest.mark.parametrize("path", ["/generate", "/v1/generate"])
def test_generate_names_the_model_version(client, path):
    response = client.post(
        path, json={"prompt": "The cat", "max_new_tokens": 5, "temperature": 0.7, "top_k": 20, "top_p": 0.9}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_version"] == "v1"
    # The prompt as the version was shown it (its template, "{prompt}\n\n"), then the completion.
    assert answer["text"] == "The cat\n\n" + answer["completion"]
    assert answer["prompt_tokens"] > 0
    assert 1 <= answer["completion_tokens"] <= 5


def test_same_seed_same_text(client):
    body = {"prompt": "A sunny day", "max_new_tokens": 8, "seed": 7}
    first, second = client.post("/generate", json=body).json(), client.post("/generate", json=body).json()
    assert first["completion"] == second["completion"]
    assert first["completion_tokens"] == second["completion_tokens"]


def test_no_model_yet_is_503_with_a_message(api_settings):
    with TestClient(create_app(api_settings, follow_updates=False)) as client:
        response = client.post("/generate", json={"prompt": "The cat"})
        assert response.status_code == 503
        assert "no policy for target 'positive' is loaded yet" in response.json()["detail"]
        assert "expansion-policy-positive" in response.json()["detail"]
        assert client.get("/v1/models/current").status_code == 503
        assert client.get("/health").json() == {
            "status": "waiting_for_model",
            "model_version": None,
            "targets": dict.fromkeys(api_settings.target_list),
            "fallbacks": {},
            "pending_updates": {},
        }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   \n"}, "prompt"),
        ({"prompt": "x" * 201}, "prompt"),
        ({}, "prompt"),
        ({"prompt": 42}, "prompt"),
        ({"prompt": "The cat", "max_new_tokens": 0}, "max_new_tokens"),
        ({"prompt": "The cat", "max_new_tokens": 17}, "max_new_tokens"),
        ({"prompt": "The cat", "max_new_tokens": "5"}, "max_new_tokens"),
        ({"prompt": "The cat", "max_new_tokens": 2.5}, "max_new_tokens"),
        ({"prompt": "The cat", "max_new_tokens": True}, "max_new_tokens"),
        ({"prompt": "The cat", "temperature": -1}, "temperature"),
        ({"prompt": "The cat", "temperature": 5.01}, "temperature"),
        ({"prompt": "The cat", "temperature": "hot"}, "temperature"),
        ({"prompt": "The cat", "top_p": 0}, "top_p"),
        ({"prompt": "The cat", "top_p": 1.5}, "top_p"),
        ({"prompt": "The cat", "top_k": -1}, "top_k"),
        ({"prompt": "The cat", "seed": -1}, "seed"),
        ({"prompt": "The cat", "stream": "yes"}, "stream"),
        ({"prompt": "The cat", "repetition_penalty": 0}, "repetition_penalty"),
        ({"prompt": "The cat", "repetition_penalty": 5e-324}, "repetition_penalty"),
        ({"prompt": "The cat", "temperature": 5e-324}, "temperature"),
        ({"prompt": "The cat", "repetition_penalty": 11}, "repetition_penalty"),
        ({"prompt": "The cat", "num_beams": 0}, "num_beams"),
        ({"prompt": "The cat", "num_beams": 9}, "num_beams"),
        ({"prompt": "The cat", "target": "angry"}, "target"),
        ({"prompt": "The cat", "target": 1}, "target"),
        ({"prompt": "The cat", "beams": 2}, "beams"),
    ],
)
def test_bad_input_is_422_naming_the_field(client, body, field):
    response = client.post("/generate", json=body)
    assert response.status_code == 422, response.text
    assert field in {error["loc"][-1] for error in response.json()["detail"]}


@pytest.mark.parametrize("path", ["/generate", "/v1/generate"])
def test_each_invalid_field_is_named_once(client, path):
    response = client.post(path, json={"prompt": 5, "max_new_tokens": -1})
    assert response.status_code == 422, response.text
    assert sorted(error["loc"][-1] for error in response.json()["detail"]) == ["max_new_tokens", "prompt"]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"prompt=The+cat", "application/x-www-form-urlencoded"),
        (b"", "application/json"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_4xx(client, content, content_type):
    response = client.post("/generate", content=content, headers={"content-type": content_type})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]


def test_prompt_longer_than_the_model_context_is_422(client):
    prompt = " ".join(["cat"] * 50)  # 199 characters, at least 50 tokens: with 16 new, over the 64-token context
    response = client.post("/generate", json={"prompt": prompt, "max_new_tokens": 16})
    assert response.status_code == 422
    assert "context" in response.json()["detail"]


def test_oversized_body_is_413(client, api_settings):
    too_big = b'{"prompt": "' + b"x" * max_body_bytes(api_settings) + b'"}'
    response = client.post("/generate", content=too_big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]


def test_oversized_body_without_content_length_is_413(client, api_settings):
    chunks = [b'{"prompt": "'] + [b"x" * 4096] * (max_body_bytes(api_settings) // 4096 + 1) + [b'"}']
    response = client.post("/generate", content=iter(chunks), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert response.status_code == 413


def test_an_internal_error_is_a_clean_500(api_settings):
    app = create_app(api_settings, follow_updates=False)

    async def broken() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/broken", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/broken")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error"}


def test_an_unknown_target_is_422_naming_the_served_ones(client):
    response = client.post("/v1/generate", json={"prompt": "The cat", "target": "angry"})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["msg"] == "target 'angry' is not served here; the targets are: positive"


def test_the_response_names_target_and_why_it_ended(client):
    answer = client.post("/v1/generate", json={"prompt": "The cat", "max_new_tokens": 3, "target": "positive"}).json()
    assert answer["target"] == "positive"
    assert answer["finish_reason"] in {"stop", "length"}
    assert answer["finish_reason"] == "stop" or answer["completion_tokens"] == 3


def test_greedy_and_beam_search_are_deterministic(client):
    for body in ({"temperature": 0}, {"num_beams": 3}, {"num_beams": 2, "temperature": 0, "repetition_penalty": 1.3}):
        request = {"prompt": "Good food", "max_new_tokens": 6, **body}
        first, second = client.post("/v1/generate", json=request), client.post("/v1/generate", json=request)
        assert first.status_code == 200, first.text
        assert first.json()["completion"] == second.json()["completion"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"num_beams": 2, "temperature": 0.7}, "leave out temperature"),
        ({"num_beams": 2, "seed": 3, "top_k": 5}, "leave out top_k, seed"),
        ({"num_beams": 2, "stream": True}, "cannot stream"),
    ],
)
def test_beam_search_with_sampling_settings_is_refused_with_the_reason(client, body, reason):
    response = client.post("/v1/generate", json={"prompt": "The cat", **body})
    assert response.status_code == 422
    assert reason in response.json()["detail"][0]["msg"]


def test_each_target_is_served_by_its_own_policy(api_settings, v1, v2):
    settings = api_settings.model_copy(update={"targets": "positive,negative,neutral"})
    app = create_app(settings, follow_updates=False)
    app.state.models.holder("positive").swap(v1.load())
    app.state.models.holder("negative").swap(v2.load())
    with TestClient(app) as client:
        default = client.post("/v1/generate", json={"prompt": "The cat", "max_new_tokens": 2}).json()
        chosen = client.post(
            "/v1/generate", json={"prompt": "The cat", "max_new_tokens": 2, "target": "negative"}
        ).json()
        missing = client.post("/v1/generate", json={"prompt": "The cat", "target": "neutral"})
    assert (default["model_version"], default["target"]) == ("v1", "positive")
    assert (chosen["model_version"], chosen["target"]) == ("v2", "negative")
    assert missing.status_code == 503
    assert "no policy for target 'neutral' is loaded yet" in missing.json()["detail"]
