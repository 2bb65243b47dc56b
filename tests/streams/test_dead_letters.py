"""Dead letters always fit in Kafka: an original too large to carry whole keeps a bounded excerpt and its size."""

from __future__ import annotations

import base64

import pytest

from streams import bus, topics


def _letter(value: bytes) -> tuple[bus.Outgoing, object]:
    message = bus.dead_letter(
        "index",
        source_topic="ctrlgpt.pages.clean",
        value=value,
        key=b"https://example.org/big",
        partition=2,
        offset=41,
        reason="ctrlgpt.pages.clean: not JSON",
        error_type="ContractError",
    )
    return message, topics.dead_letter_topic("index").decode(message.value)


def test_a_small_original_travels_whole() -> None:
    _, letter = _letter(b"{not json")

    assert (letter.truncated, letter.original_size) == (False, None)
    assert base64.b64decode(letter.original_base64) == b"{not json"


def test_a_7_mb_original_keeps_its_reason_source_and_an_excerpt_under_the_producer_limit() -> None:
    original = b"x" * (7 * 1024 * 1024)
    message, letter = _letter(original)

    assert len(message.value) < bus.MESSAGE_MAX_BYTES - bus.ENVELOPE_BYTES
    assert (letter.truncated, letter.original_size) == (True, len(original))
    assert base64.b64decode(letter.original_base64) == original[: bus.DEAD_LETTER_EXCERPT_BYTES]
    assert (letter.source_topic, letter.partition, letter.offset, letter.key) == (
        "ctrlgpt.pages.clean",
        2,
        41,
        "https://example.org/big",
    )
    assert letter.reason == "ctrlgpt.pages.clean: not JSON"


def test_a_misspelt_stage_is_refused_before_a_letter_is_built() -> None:
    with pytest.raises(ValueError, match="unknown stage 'cleaner'"):
        bus.dead_letter("cleaner", source_topic="ctrlgpt.pages.raw", value=b"x", reason="r", error_type="E")
