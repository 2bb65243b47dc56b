"""A JSON body may escape a lone UTF-16 surrogate ("\\ud800"), which no UTF-8 text holds: each JSON
endpoint below answers it with a 422 naming the field, never a 500 (schemathesis only generates valid text)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.serving.served_model import ModelHolder

CASES = [
    ("/v1/generate", '{"prompt": "The cat\\ud800"}'),
    ("/generate", '{"prompt": "The cat\\ud800"}'),
    ("/v1/classify", '{"text": "broken \\ud800"}'),
    ("/v1/classify", '{"texts": ["fine", "broken \\udfff"]}'),
    ("/v1/feedback", '{"kind": "rating", "prompt": "p", "completion": "c\\ud800", "rating": "up"}'),
    ("/v1/feedback", '{"kind": "preference", "prompt": "p", "chosen": "a", "rejected": "b", "target": "\\udfff"}'),
    ("/v1/completions", '{"model": "m", "prompt": "The cat\\ud800"}'),
    ("/v1/chat/completions", '{"model": "m", "messages": [{"role": "user", "content": "hi\\ud800"}]}'),
]


@pytest.fixture(scope="module")
def client(api_settings, make_scored_version):
    holder = ModelHolder()
    holder.swap(make_scored_version("v-surrogates", seed=13).load())
    app = create_app(api_settings, holder=holder, follow_updates=False, monitor_kafka=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(("path", "body"), CASES)
def test_a_lone_surrogate_is_a_4xx_not_a_500(client, path, body):
    response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert "unicode" in response.text


def test_a_lone_surrogate_in_a_list_of_prompts_is_refused_before_the_model_sees_it(client):
    body = '{"model": "m", "prompt": ["fine", "The cat\\ud800"]}'
    response = client.post("/v1/completions", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "prompt"
