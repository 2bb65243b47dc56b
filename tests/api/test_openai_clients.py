"""The official `openai` client, with the arguments its users pass by habit, against the API served by uvicorn
on a real port: neutral values work, a value this API cannot honour is a 400 in OpenAI's shape that says why."""

from __future__ import annotations

import httpx
import openai
import pytest

from api.main import create_app

# Refuses a role it does not know, as many chat templates do: `developer` must reach it as `system`.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role ' + message['role']) }}{% endif %}"
    "{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}assistant:"
)
POLICY = "expansion-policy-positive"
NEUTRAL = {"frequency_penalty": 0, "presence_penalty": 0, "logit_bias": {}, "user": "user-42"}


@pytest.fixture(scope="module")
def base_url(api_settings, v1, serve_api):
    app = create_app(api_settings, follow_updates=False, monitor_kafka=False)
    served = v1.load()
    served.tokenizer.chat_template = CHAT_TEMPLATE
    app.state.models.holder("positive").swap(served)
    with serve_api(api_settings, app) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_a_completion_with_the_neutral_penalties_bias_and_user(client):
    completion = client.completions.create(model=POLICY, prompt="The cat", max_tokens=4, seed=1, **NEUTRAL)
    assert completion.system_fingerprint == "v1"
    assert 1 <= completion.usage.completion_tokens <= 4
    nulls = client.completions.create(model=POLICY, prompt="The cat", max_tokens=4, seed=1, logit_bias=None)
    assert nulls.choices[0].text == completion.choices[0].text


def test_chat_with_text_parts_the_developer_role_and_max_completion_tokens(client):
    parts = [{"type": "text", "text": "Be kind."}, {"type": "text", "text": "Be brief."}]
    answer = client.chat.completions.create(
        model=POLICY,
        messages=[{"role": "developer", "content": parts}, {"role": "user", "content": "Tell me about the cat"}],
        max_completion_tokens=5,
        seed=4,
        **NEUTRAL,
    )
    plain = client.chat.completions.create(
        model=POLICY,
        messages=[
            {"role": "system", "content": "Be kind.\nBe brief."},
            {"role": "user", "content": "Tell me about the cat"},
        ],
        max_tokens=5,
        seed=4,
    )
    assert answer.choices[0].message.content == plain.choices[0].message.content
    assert answer.usage == plain.usage
    assert 1 <= answer.usage.completion_tokens <= 5


@pytest.mark.parametrize(
    ("arguments", "param"),
    [
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"presence_penalty": -1}, "presence_penalty"),
        ({"logit_bias": {"42": -100}}, "logit_bias"),
        ({"max_tokens": 4, "max_completion_tokens": 5}, "max_completion_tokens"),
        ({"max_completion_tokens": 17}, "max_completion_tokens"),
        ({"frequency_penalty": 3}, "frequency_penalty"),
    ],
)
def test_a_value_this_api_cannot_honour_is_a_400_naming_it(client, arguments, param):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=POLICY, messages=[{"role": "user", "content": "Hi"}], **arguments)
    assert raised.value.param == param
    assert param in raised.value.message


def test_an_unsupported_penalty_says_what_is_supported_in_openais_shape(base_url):
    response = httpx.post(
        f"{base_url}/v1/completions", json={"model": POLICY, "prompt": "The cat", "frequency_penalty": 0.5}, timeout=60
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "frequency_penalty: only 0 (no penalty) is supported, got 0.5; "
            "leave it out or use POST /v1/generate's repetition_penalty",
            "type": "invalid_request_error",
            "param": "frequency_penalty",
            "code": "unsupported_value",
        }
    }


def test_an_image_part_is_a_400_saying_only_text_is_read(client):
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model=POLICY, messages=[{"role": "user", "content": [{"type": "text", "text": "What is it?"}, image]}]
        )
    assert raised.value.param == "messages"
    assert "only text parts are supported, not 'image_url'" in raised.value.message
