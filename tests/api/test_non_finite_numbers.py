"""NaN, Infinity, -Infinity and 1e400 (which JSON parsers read as infinity) in a request body: a 4xx naming the
field, never a 500. JSON encoders refuse to write these numbers, so the bodies are raw text; the schema fuzzer
(test_fuzz.py) only generates finite numbers, so these cases live here beside it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.serving.served_model import ModelHolder

NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]

# (path, body with {} where the number goes, the field that must be named)
FIELDS = [
    ("/v1/generate", '{{"prompt": "The cat", "temperature": {}}}', "temperature"),
    ("/v1/generate", '{{"prompt": "The cat", "top_p": {}}}', "top_p"),
    ("/v1/generate", '{{"prompt": "The cat", "repetition_penalty": {}}}', "repetition_penalty"),
    ("/v1/generate", '{{"prompt": "The cat", "max_new_tokens": {}}}', "max_new_tokens"),
    ("/v1/generate", '{{"prompt": "The cat", "top_k": {}}}', "top_k"),
    ("/v1/generate", '{{"prompt": "The cat", "seed": {}}}', "seed"),
    ("/generate", '{{"prompt": {}}}', "prompt"),
    ("/v1/classify", '{{"text": {}}}', "text"),
    ("/v1/classify", '{{"texts": ["fine", {}]}}', "texts"),
    ("/v1/feedback", '{{"kind": "rating", "prompt": "p", "completion": "c", "rating": {}}}', "rating"),
    ("/v1/feedback", '{{"kind": "preference", "prompt": {}, "chosen": "a", "rejected": "b"}}', "prompt"),
]

OPENAI_FIELDS = [
    ("/v1/completions", '{{"model": "m", "prompt": "The cat", "temperature": {}}}', "temperature"),
    ("/v1/completions", '{{"model": "m", "prompt": "The cat", "top_p": {}}}', "top_p"),
    ("/v1/completions", '{{"model": "m", "prompt": "The cat", "max_tokens": {}}}', "max_tokens"),
    ("/v1/completions", '{{"model": "m", "prompt": "The cat", "frequency_penalty": {}}}', "frequency_penalty"),
    (
        "/v1/chat/completions",
        '{{"model": "m", "messages": [{{"role": "user", "content": "hi"}}], "presence_penalty": {}}}',
        "presence_penalty",
    ),
    ("/v1/chat/completions", '{{"model": "m", "messages": [{{"role": "user", "content": "hi"}}], "seed": {}}}', "seed"),
]


@pytest.fixture(scope="module")
def client(api_settings, make_scored_version):
    holder = ModelHolder()
    holder.swap(make_scored_version("v-non-finite", seed=17).load())
    # No Kafka (port 1): no feedback may reach a real labels topic.
    settings = api_settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1", "feedback_timeout_s": 0.2})
    app = create_app(settings, holder=holder, follow_updates=False, monitor_kafka=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _post(client: TestClient, path: str, body: str):
    return client.post(path, content=body, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("number", NON_FINITE)
@pytest.mark.parametrize(("path", "template", "field"), FIELDS)
def test_a_non_finite_number_is_a_422_naming_the_field(client, path, template, field, number):
    response = _post(client, path, template.format(number))
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(field in error["loc"] for error in errors), errors


@pytest.mark.parametrize("number", NON_FINITE)
@pytest.mark.parametrize(("path", "template", "field"), OPENAI_FIELDS)
def test_a_non_finite_number_is_an_openai_400_naming_the_field(client, path, template, field, number):
    response = _post(client, path, template.format(number))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == field


def test_the_422_says_the_number_is_not_finite_and_echoes_it_as_text(client):
    response = _post(client, "/v1/generate", '{"prompt": "The cat", "temperature": NaN}')
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", "temperature"]
    assert "finite" in error["msg"]
    assert error["input"] == "NaN"
