import pytest

from deploy.demo_site import load_articles
from streams.near_duplicates import (
    BandIndex,
    band_keys,
    check_and_remember,
    hamming,
    simhash,
    simhashes,
)

ARTICLES = ["\n\n".join(article.paragraphs) for article in load_articles()]
MAX_BITS = 6


def _replace_words(text: str, positions: list[int]) -> str:
    words = text.split(" ")
    for position in positions:
        words[position] = "zebra"
    return " ".join(words)


def test_identical_texts_have_identical_fingerprints_whatever_the_spacing_and_case():
    assert simhash(ARTICLES[0]) == simhash(ARTICLES[0].upper().replace(" ", "  \n"))


def test_fingerprints_stay_those_already_stored():
    # The cleaner's table holds fingerprints from earlier versions: a change of the definition would
    # stop every stored original from matching its copies.
    assert simhash(ARTICLES[0]) == 0x6D585C18C08D4EE3
    assert simhash("Rivers run north") == 0x61995F2676F9F344
    assert simhash("") == 0x7854EA0C3D92E6F7
    # Fewer words than a shingle, and one shingle repeated: each counted once.
    assert simhash("north") == 0x15B1775FD76B8C84
    assert simhash("Rivers run") == 0x86C65A9428AD3427
    assert simhash("the the the the the the") == 0xB7A51C5F4E6CFF95


def test_a_batch_gives_each_text_the_fingerprint_it_has_alone():
    texts = [*ARTICLES, "", "north", "Rivers run", "Rivers run north", "the the the the the the", "?!", ARTICLES[0]]
    alone = [simhash(text) for text in texts]
    assert simhashes(texts) == alone
    assert simhashes(texts[::-1]) == alone[::-1]
    assert len(set(alone[: len(ARTICLES)])) == len(ARTICLES)
    assert simhashes([]) == []


def test_a_few_words_changed_is_near():
    original = ARTICLES[0]
    edited = _replace_words(original, [10, 120, 250])

    assert 0 < hamming(simhash(original), simhash(edited)) <= MAX_BITS


def test_different_articles_are_far():
    fingerprints = [simhash(text) for text in ARTICLES]

    closest = min(hamming(a, b) for i, a in enumerate(fingerprints) for b in fingerprints[i + 1 :])

    assert closest > 2 * MAX_BITS


def test_bands_cover_the_64_bits_and_any_two_fingerprints_within_the_distance_share_one():
    fingerprint = simhash(ARTICLES[1])
    flipped = fingerprint ^ (1 << 0 | 1 << 20 | 1 << 33 | 1 << 41 | 1 << 50 | 1 << 63)

    assert len(band_keys(fingerprint, MAX_BITS)) == MAX_BITS + 1
    assert set(band_keys(fingerprint, MAX_BITS)) & set(band_keys(flipped, MAX_BITS))
    assert band_keys(fingerprint, 0) == [fingerprint]
    with pytest.raises(ValueError, match="max_distance"):
        band_keys(fingerprint, 64)
    with pytest.raises(ValueError, match="max_distance"):
        BandIndex(64)


def _remembered() -> tuple[dict[str, int], BandIndex]:
    return {}, BandIndex(MAX_BITS)


def test_a_near_copy_under_another_url_names_the_first_page():
    originals, index = _remembered()
    first, copy = simhash(ARTICLES[0]), simhash(_replace_words(ARTICLES[0], [5]))

    assert check_and_remember(originals, index, first, "https://a.example/story") is None
    assert check_and_remember(originals, index, copy, "https://b.example/copy") == "https://a.example/story"
    assert check_and_remember(originals, index, simhash(ARTICLES[2]), "https://a.example/other") is None
    assert originals == {"https://a.example/story": first, "https://a.example/other": simhash(ARTICLES[2])}


def test_a_refetch_of_the_same_url_is_not_a_duplicate_of_itself_and_writes_nothing():
    fingerprint = simhash(ARTICLES[0])
    originals, index = _remembered()
    assert check_and_remember(originals, index, fingerprint, "https://a.example/story") is None
    writes: list[str] = []

    class Recording(dict):
        def __setitem__(self, key: str, value: int) -> None:
            writes.append(key)
            super().__setitem__(key, value)

    recording = Recording(originals)
    assert check_and_remember(recording, index, fingerprint, "https://a.example/story") is None
    assert writes == []
    assert len(index) == MAX_BITS + 1


def test_a_changed_page_refiles_its_url_under_the_new_fingerprint_only():
    originals, index = _remembered()
    old, new = simhash(ARTICLES[0]), simhash(ARTICLES[1])
    check_and_remember(originals, index, old, "https://a.example/story")
    check_and_remember(originals, index, new, "https://a.example/story")

    assert originals == {"https://a.example/story": new}
    assert index.find_original(old, "https://b.example/copy") is None
    assert index.find_original(new, "https://b.example/copy") == "https://a.example/story"
    assert len(index) == MAX_BITS + 1


def test_only_originals_are_stored_so_a_duplicate_of_a_duplicate_names_the_original():
    originals, index = _remembered()
    original = simhash(ARTICLES[0])
    check_and_remember(originals, index, original, "https://a.example/story")
    check_and_remember(originals, index, original, "https://b.example/copy")

    assert index.find_original(original, "https://c.example/copy") == "https://a.example/story"
    assert list(originals) == ["https://a.example/story"]


def test_an_index_rebuilt_from_the_stored_originals_finds_what_the_live_one_found():
    originals, live = _remembered()
    for n, text in enumerate(ARTICLES[:10]):
        check_and_remember(originals, live, simhash(text), f"https://a.example/{n}")
    rebuilt = BandIndex.of(originals.items(), MAX_BITS)
    copies = [simhash(_replace_words(text, [7])) for text in ARTICLES[:12]]

    found = [rebuilt.find_original(copy, "https://b.example/copy") for copy in copies]

    assert found == [live.find_original(copy, "https://b.example/copy") for copy in copies]
    assert found[:10] == [f"https://a.example/{n}" for n in range(10)]
    assert found[10:] == [None, None]


def test_the_first_original_stays_findable_however_many_share_its_bands():
    index = BandIndex(6)
    first = simhash(ARTICLES[0])
    index.add("https://a.example/first", first)
    # Thousands of pages in the same buckets, none near the first one.
    for n in range(5000):
        index.add(f"https://a.example/{n}", first ^ (0b1111111 << (n % 57)))

    assert index.find_original(first ^ 1, "https://b.example/copy") == "https://a.example/first"
    assert len(index) == 5001 * 7
