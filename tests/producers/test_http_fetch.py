"""Decoding a body by its declared charset, strictly."""

from __future__ import annotations

import pytest

from producers.browser import FetchError
from producers.http_fetch import decode_body


def test_a_body_is_decoded_by_its_declared_charset() -> None:
    assert decode_body("Café".encode("iso-8859-1"), "iso-8859-1") == "Café"
    assert decode_body("Café".encode(), None) == "Café"  # no charset: UTF-8


def test_a_body_not_valid_in_its_charset_is_refused_with_where() -> None:
    with pytest.raises(FetchError, match="not valid utf-8.*byte 3") as caught:
        decode_body(b"caf\xe9", "utf-8")
    assert caught.value.error_type == "UndecodableBody" and not caught.value.transient


def test_an_unknown_charset_is_refused() -> None:
    with pytest.raises(FetchError, match="unknown charset 'x-klingon'"):
        decode_body(b"abc", "x-klingon")
