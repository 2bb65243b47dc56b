"""The OpenAI-compatible endpoints, driven by the official `openai` client against the app in-process."""

from __future__ import annotations

from collections import defaultdict

import openai
import pytest
from fastapi.testclient import TestClient

from api.main import create_app

CHAT_TEMPLATE = "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}assistant:"


@pytest.fixture(scope="module")
def app(api_settings, v1, v2):
    settings = api_settings.model_copy(update={"targets": "positive,negative,neutral", "completions_max_choices": 6})
    app = create_app(settings, follow_updates=False)
    app.state.models.holder("positive").swap(v1.load())
    chatty = v2.load()
    chatty.tokenizer.chat_template = CHAT_TEMPLATE
    app.state.models.holder("negative").swap(chatty)
    return app


@pytest.fixture(scope="module")
def http(app):
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="module")
def client(http) -> openai.OpenAI:
    # No retries: a 503 must reach the test, not be retried.
    return openai.OpenAI(base_url=http.base_url.join("/v1"), api_key="unused", http_client=http, max_retries=0)


POSITIVE, NEGATIVE, NEUTRAL = "expansion-policy-positive", "expansion-policy-negative", "expansion-policy-neutral"


def test_models_lists_each_loaded_policy_with_its_version(client):
    models = {model.id: model for model in client.models.list()}
    assert set(models) == {POSITIVE, NEGATIVE}
    assert (models[POSITIVE].version, models[POSITIVE].target, models[POSITIVE].owned_by) == (
        "v1",
        "positive",
        "ctrlgpt",
    )


def test_a_completion_names_its_model_and_version(client):
    completion = client.completions.create(model=POSITIVE, prompt="The cat", max_tokens=5, seed=3)
    assert completion.object == "text_completion"
    assert (completion.model, completion.system_fingerprint) == (POSITIVE, "v1")
    [choice] = completion.choices
    assert (choice.index, choice.logprobs) == (0, None)
    assert choice.finish_reason in {"stop", "length"}
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert 1 <= completion.usage.completion_tokens <= 5


def test_prompts_times_n_choices_in_order_each_reproducible_by_seed(client):
    request = {
        "model": POSITIVE,
        "prompt": ["The cat", "Kafka keeps"],
        "n": 3,
        "max_tokens": 8,
        "seed": 5,
        "temperature": 1.5,
    }
    first, again = client.completions.create(**request), client.completions.create(**request)
    assert [choice.index for choice in first.choices] == list(range(6))
    assert [choice.text for choice in first.choices] == [choice.text for choice in again.choices]
    assert len({choice.text for choice in first.choices[:3]}) > 1, "choices of one prompt use different seeds"
    shifted = client.completions.create(**{**request, "seed": 6, "prompt": "The cat", "n": 1})
    assert shifted.choices[0].text == first.choices[1].text  # choice j samples with seed + j


def test_a_stop_string_ends_the_text_before_it(client):
    free = client.completions.create(model=POSITIVE, prompt="The cat", max_tokens=12, temperature=0).choices[0].text
    assert len(free) > 4, free
    stopped = client.completions.create(
        model=POSITIVE, prompt="The cat", max_tokens=12, temperature=0, stop=[free[3:5]]
    )
    assert stopped.choices[0].text == free[: free.index(free[3:5])]
    assert stopped.choices[0].finish_reason == "stop"


def test_echo_begins_the_text_with_the_prompt(client):
    completion = client.completions.create(model=POSITIVE, prompt="The cat", max_tokens=3, echo=True)
    assert completion.choices[0].text.startswith("The cat")


def test_streamed_chunks_add_up_to_the_same_choices(client):
    request = {"model": POSITIVE, "prompt": ["The cat", "Good food"], "n": 2, "max_tokens": 8, "seed": 9}
    whole = client.completions.create(**request)
    texts: dict[int, str] = defaultdict(str)
    finished, usage = {}, None
    for chunk in client.completions.create(**request, stream=True, stream_options={"include_usage": True}):
        assert chunk.system_fingerprint == "v1"
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            if choice.finish_reason is not None:
                finished[choice.index] = choice.finish_reason
        usage = chunk.usage or usage
    assert [texts[index] for index in range(4)] == [choice.text for choice in whole.choices]
    assert finished == {choice.index: choice.finish_reason for choice in whole.choices}
    assert usage.completion_tokens == whole.usage.completion_tokens
    assert usage.prompt_tokens == whole.usage.prompt_tokens


def test_an_unknown_model_is_404_in_openais_shape(client, http):
    with pytest.raises(openai.NotFoundError) as raised:
        client.completions.create(model="gpt-4", prompt="The cat")
    assert raised.value.code == "model_not_found"
    body = http.post("/v1/completions", json={"model": "gpt-4", "prompt": "The cat"}).json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["param"] == "model"
    assert POSITIVE in body["error"]["message"]


def test_a_model_without_a_loaded_version_is_503(client):
    with pytest.raises(openai.InternalServerError) as raised:
        client.completions.create(model=NEUTRAL, prompt="The cat")
    assert raised.value.status_code == 503
    assert raised.value.code == "model_not_loaded"


@pytest.mark.parametrize(
    ("arguments", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": 1e-300}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": 17}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 7}, "n"),
        ({"prompt": ["a", "b", "c"], "n": 3}, "n"),
        ({"prompt": []}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * 201}, "prompt"),
        ({"prompt": " ".join(["cat"] * 60)}, "prompt"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"seed": -1}, "seed"),
        ({"logprobs": 2}, "logprobs"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(client, arguments, param):
    with pytest.raises(openai.BadRequestError) as raised:
        client.completions.create(**{"model": POSITIVE, "prompt": "The cat", "max_tokens": 16, **arguments})
    assert raised.value.param == param
    assert raised.value.body["message"]


def test_chat_without_a_chat_template_is_400_saying_so(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=POSITIVE, messages=[{"role": "user", "content": "Hello"}])
    assert raised.value.code == "chat_template_missing"
    assert "no chat template" in raised.value.message


def test_chat_with_a_chat_template_answers_as_the_assistant(client):
    messages = [{"role": "user", "content": "Tell me about the cat"}]
    answer = client.chat.completions.create(model=NEGATIVE, messages=messages, max_tokens=6, seed=2)
    assert answer.object == "chat.completion"
    assert answer.system_fingerprint == "v2"
    assert answer.choices[0].message.role == "assistant"
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model=NEGATIVE, messages=messages, max_tokens=6, seed=2, stream=True
        )
        if chunk.choices
    )
    assert streamed == answer.choices[0].message.content
