"""Near-duplicate detection with SimHash and LSH bands (pure, no I/O).

A page's SimHash is a 64-bit fingerprint of its word shingles: pages that share
most shingles have fingerprints a few bits apart (Charikar 2002; Manku et al.
2007 use 64 bits and a distance of 3 for web pages). To find a fingerprint
within `max_distance` bits without scanning them all, the 64 bits are cut into
`max_distance + 1` bands (the default distance of 6, for pages of a few hundred
words, gives 7 bands of 9 or 10 bits): two fingerprints that differ in at most `max_distance`
bits agree exactly on at least one band (pigeonhole), so the candidates are the
fingerprints filed under the page's own band keys.

The durable state is one fingerprint per original page (`originals`, URL -> SimHash:
the cleaner's faust table, one changelog record per new original); the band index
(`BandIndex`) is derived from it in memory and rebuilt from it after a restart or a
rebalance, so the changelog carries no copy of it.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, MutableMapping

import numpy as np

__all__ = ["simhash", "hamming", "band_keys", "BandIndex", "check_and_remember", "SHINGLE_WORDS", "BITS", "MAX_BUCKET"]

BITS = 64
SHINGLE_WORDS = 3
# Fingerprints kept per band key, the oldest dropped first: bounds the cost of a lookup
# (a ~10-bit band value is shared by 1/1000 of all pages).
MAX_BUCKET = 256

_WORD = re.compile(r"\w+")
# Shingle hashes are combined from word hashes: a word is hashed once per process, not once per shingle.
_WORD_CACHE = 1 << 16
_COMBINE = np.uint64(0x9E3779B97F4A7C15)


@functools.lru_cache(maxsize=_WORD_CACHE)
def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit flips about half the output bits (uint64 arithmetic wraps)."""
    values = values ^ (values >> np.uint64(30))
    values = values * np.uint64(0xBF58476D1CE4E5B9)
    values = values ^ (values >> np.uint64(27))
    values = values * np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))


def simhash(text: str, *, shingle_words: int = SHINGLE_WORDS) -> int:
    """64-bit SimHash of the text's lower-cased word shingles, each shingle counted once."""
    words = _WORD.findall(text.casefold()) or [""]
    hashes = np.fromiter((_word_hash(word) for word in words), dtype=np.uint64, count=len(words))
    count = max(1, len(words) - shingle_words + 1)
    shingles = np.zeros(count, dtype=np.uint64)
    for position in range(min(shingle_words, len(words))):
        shingles = _mix(shingles * _COMBINE + hashes[position : position + count])
    shingles = np.unique(shingles)
    # One row of 64 bits per shingle, bit i of the integer in column i; a bit of the
    # fingerprint is set where most shingles have it set.
    bits = np.unpackbits(shingles.astype("<u8").view(np.uint8), bitorder="little")
    ones = bits.reshape(-1, BITS).sum(axis=0, dtype=np.int64)
    return sum(1 << bit for bit in np.flatnonzero(2 * ones > len(shingles)).tolist())


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def band_keys(fingerprint: int, max_distance: int) -> list[str]:
    """The index keys of a fingerprint: `band:value` for each of `max_distance + 1` bands."""
    bands = max_distance + 1
    if not 1 <= bands <= BITS:
        raise ValueError(f"max_distance must be between 0 and {BITS - 1}, got {max_distance}")
    bounds = [BITS * i // bands for i in range(bands + 1)]
    return [
        f"{i}:{fingerprint >> low & ((1 << high - low) - 1):x}"
        for i, (low, high) in enumerate(zip(bounds, bounds[1:]))
    ]


class BandIndex:
    """Original pages filed by band key: the candidates within `max_distance` bits of a fingerprint."""

    def __init__(self, max_distance: int) -> None:
        band_keys(0, max_distance)  # validates the distance
        self.max_distance = max_distance
        self._buckets: dict[str, list[tuple[int, str]]] = {}

    @classmethod
    def of(cls, originals: Iterable[tuple[str, int]], max_distance: int) -> BandIndex:
        """The index of `(url, fingerprint)` pairs, oldest first (the order of the table)."""
        index = cls(max_distance)
        for url, fingerprint in originals:
            index.add(url, int(fingerprint))
        return index

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())

    def add(self, url: str, fingerprint: int) -> None:
        for key in band_keys(fingerprint, self.max_distance):
            bucket = self._buckets.setdefault(key, [])
            bucket.append((fingerprint, url))
            if len(bucket) > MAX_BUCKET:
                del bucket[0]

    def discard(self, url: str, fingerprint: int) -> None:
        for key in band_keys(fingerprint, self.max_distance):
            bucket = self._buckets.get(key)
            if bucket is not None:
                bucket[:] = [entry for entry in bucket if entry[1] != url]

    def find_original(self, fingerprint: int, url: str) -> str | None:
        """URL of the closest filed page within the distance; a page is never a duplicate of its own URL."""
        best: tuple[int, str] | None = None
        for key in band_keys(fingerprint, self.max_distance):
            for stored, stored_url in self._buckets.get(key, ()):
                distance = hamming(stored, fingerprint)
                if stored_url != url and distance <= self.max_distance and (best is None or distance < best[0]):
                    best = (distance, stored_url)
        return best[1] if best else None


def check_and_remember(originals: MutableMapping[str, int], index: BandIndex, fingerprint: int, url: str) -> str | None:
    """The URL this page nearly duplicates, or None, in which case it is stored (and filed) as an original.

    Only originals are stored, so `near_duplicate_of` always names a page that is not itself a duplicate.
    `originals` is written only when the URL's fingerprint changes: a re-crawl of an unchanged page costs
    no changelog record.
    """
    original = index.find_original(fingerprint, url)
    if original is None:
        previous = originals.get(url)
        if previous != fingerprint:
            if previous is not None:
                index.discard(url, int(previous))
            originals[url] = fingerprint
            index.add(url, fingerprint)
    return original
