from __future__ import annotations

import pytest

from consumers.passages import passage_key, split_passages

URL = "http://127.0.0.1:8090/articles/a.html"


def paragraph(n: int, word: str = "word") -> str:
    """Whole sentences, about n characters."""
    sentence = f"This {word} sentence is here."
    return " ".join([sentence] * max(1, round(n / (len(sentence) + 1))))


def test_short_paragraphs_are_joined_up_to_the_maximum() -> None:
    text = "\n".join(paragraph(150, f"p{i}") for i in range(10))
    passages = split_passages(URL, text)
    assert len(passages) > 1
    assert all(len(p.text) <= 800 for p in passages)
    assert all(len(p.text) >= 200 for p in passages)
    joined = [para for p in passages for para in p.text.split("\n\n")]
    assert joined == [paragraph(150, f"p{i}") for i in range(10)]


def test_paragraphs_are_never_cut_when_they_fit() -> None:
    paragraphs = [paragraph(600, "a"), paragraph(600, "b"), paragraph(300, "c")]
    passages = split_passages(URL, "\n\n".join(paragraphs))
    assert [p.text for p in passages] == [paragraphs[0], paragraphs[1], paragraphs[2]]


def test_a_short_last_paragraph_joins_the_passage_before() -> None:
    paragraphs = [paragraph(400, "a"), paragraph(500, "b"), "The end."]
    passages = split_passages(URL, "\n".join(paragraphs))
    assert [p.text for p in passages] == [paragraphs[0], f"{paragraphs[1]}\n\nThe end."]


def test_a_long_paragraph_is_cut_at_sentence_ends() -> None:
    long = paragraph(2000, "long")
    passages = split_passages(URL, long)
    assert len(passages) >= 3
    assert all(len(p.text) <= 800 for p in passages)
    assert all(p.text.endswith(".") for p in passages)
    assert " ".join(p.text for p in passages) == long


def test_a_sentence_longer_than_a_passage_is_cut_at_spaces_and_a_huge_word_anywhere() -> None:
    words = " ".join(["alpha"] * 300)
    blob = "x" * 1700
    passages = split_passages(URL, f"{words}\n{blob}")
    assert all(0 < len(p.text) <= 800 for p in passages)
    assert "".join(p.text.replace(" ", "").replace("\n", "") for p in passages) == "alpha" * 300 + blob


def test_whitespace_is_normalised_and_empty_text_gives_no_passages() -> None:
    assert split_passages(URL, "  \n\n \t\n") == []
    (only,) = split_passages(URL, "  A  short\tpage.  \n")
    assert only.text == "A short page."
    assert only.index == 0


def test_keys_are_stable_and_depend_on_url_index_and_text() -> None:
    text = "\n".join(paragraph(600, f"p{i}") for i in range(3))
    first, second = split_passages(URL, text), split_passages(URL, text)
    assert [p.key for p in first] == [p.key for p in second]
    assert len({p.key for p in first}) == len(first)
    assert first[0].key == passage_key(URL, 0, first[0].text)
    assert split_passages(URL + "?b", text)[0].key != first[0].key
    assert passage_key(URL, 1, first[0].text) != first[0].key


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        split_passages(URL, "text", min_chars=900, max_chars=800)
