import pytest

from deploy.demo_site import load_articles
from streams.near_duplicates import MAX_BUCKET, band_keys, check_and_remember, find_original, hamming, remember, simhash

ARTICLES = ["\n\n".join(article.paragraphs) for article in load_articles()]
MAX_BITS = 6


def _replace_words(text: str, positions: list[int]) -> str:
    words = text.split(" ")
    for position in positions:
        words[position] = "zebra"
    return " ".join(words)


def test_identical_texts_have_identical_fingerprints_whatever_the_spacing_and_case():
    assert simhash(ARTICLES[0]) == simhash(ARTICLES[0].upper().replace(" ", "  \n"))


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
    assert band_keys(fingerprint, 0) == [f"0:{fingerprint:x}"]
    with pytest.raises(ValueError, match="max_distance"):
        band_keys(fingerprint, 64)


def test_a_near_copy_under_another_url_names_the_first_page():
    seen: dict[str, list] = {}
    first, copy = simhash(ARTICLES[0]), simhash(_replace_words(ARTICLES[0], [5]))

    assert check_and_remember(seen, first, "https://a.example/story", MAX_BITS) is None
    assert check_and_remember(seen, copy, "https://b.example/copy", MAX_BITS) == "https://a.example/story"
    assert check_and_remember(seen, simhash(ARTICLES[2]), "https://a.example/other", MAX_BITS) is None


def test_a_refetch_of_the_same_url_is_not_a_duplicate_of_itself():
    seen: dict[str, list] = {}
    fingerprint = simhash(ARTICLES[0])

    assert check_and_remember(seen, fingerprint, "https://a.example/story", MAX_BITS) is None
    assert check_and_remember(seen, fingerprint, "https://a.example/story", MAX_BITS) is None
    assert all(len(bucket) == 1 for bucket in seen.values())


def test_only_originals_are_stored_so_a_duplicate_of_a_duplicate_names_the_original():
    seen: dict[str, list] = {}
    original = simhash(ARTICLES[0])
    check_and_remember(seen, original, "https://a.example/story", MAX_BITS)
    check_and_remember(seen, original, "https://b.example/copy", MAX_BITS)

    assert find_original(seen, original, "https://c.example/copy", MAX_BITS) == "https://a.example/story"
    assert all(url == "https://a.example/story" for bucket in seen.values() for _, url in bucket)


def test_buckets_replace_a_recrawled_url_and_keep_the_newest_entries():
    bucket = remember([[1, "https://a.example/x"], [2, "https://a.example/y"]], 3, "https://a.example/x")
    assert bucket == [[2, "https://a.example/y"], [3, "https://a.example/x"]]

    full = [[n, f"https://a.example/{n}"] for n in range(MAX_BUCKET)]
    assert remember(full, 999, "https://a.example/new")[-1] == [999, "https://a.example/new"]
    assert len(remember(full, 999, "https://a.example/new")) == MAX_BUCKET
