"""Near-duplicate detection with SimHash and LSH bands (pure, no I/O).

A page's SimHash is a 64-bit fingerprint of its word shingles: pages that share
most shingles have fingerprints a few bits apart (Charikar 2002; Manku et al.
2007 use 64 bits and a distance of 3 for web pages). To find a fingerprint
within `max_distance` bits without scanning them all, the 64 bits are cut into
`max_distance + 1` bands (the default distance of 6, for pages of a few hundred
words, gives 7 bands of 9 or 10 bits): two fingerprints that differ in at most `max_distance`
bits agree exactly on at least one band (pigeonhole), so the candidates are the
fingerprints stored under the page's own band keys.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, MutableMapping, Sequence

import numpy as np

__all__ = ["simhash", "hamming", "band_keys", "find_original", "remember", "check_and_remember", "SHINGLE_WORDS", "BITS"]

BITS = 64
SHINGLE_WORDS = 3
# Fingerprints kept per band key, the oldest dropped first: bounds the cost of a lookup
# and the size of a changelog message (a ~10-bit band value is shared by 1/1000 of all pages).
MAX_BUCKET = 256

_WORD = re.compile(r"\w+")

# A stored page: [fingerprint, url], JSON-friendly for the faust table's changelog.
Entry = Sequence[int | str]


def simhash(text: str, *, shingle_words: int = SHINGLE_WORDS) -> int:
    """64-bit SimHash of the text's lower-cased word shingles, each shingle counted once."""
    words = _WORD.findall(text.casefold())
    shingles = {" ".join(words[i : i + shingle_words]) for i in range(max(1, len(words) - shingle_words + 1))}
    digests = b"".join(hashlib.blake2b(shingle.encode(), digest_size=8).digest() for shingle in sorted(shingles))
    # One row of 64 bits per shingle, bit i of the integer in column i; a bit of the
    # fingerprint is set where most shingles have it set.
    bits = np.unpackbits(np.frombuffer(digests, dtype=">u8").astype("<u8").view(np.uint8), bitorder="little")
    ones = bits.reshape(-1, BITS).sum(axis=0, dtype=np.int64)
    return sum(1 << bit for bit in np.flatnonzero(2 * ones > len(shingles)).tolist())


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def band_keys(fingerprint: int, max_distance: int) -> list[str]:
    """The table keys of a fingerprint: `band:value` for each of `max_distance + 1` bands."""
    bands = max_distance + 1
    if not 1 <= bands <= BITS:
        raise ValueError(f"max_distance must be between 0 and {BITS - 1}, got {max_distance}")
    bounds = [BITS * i // bands for i in range(bands + 1)]
    return [
        f"{i}:{fingerprint >> low & ((1 << high - low) - 1):x}"
        for i, (low, high) in enumerate(zip(bounds, bounds[1:]))
    ]


def find_original(
    buckets: Mapping[str, Iterable[Entry]], fingerprint: int, url: str, max_distance: int
) -> str | None:
    """URL of the closest earlier page within `max_distance` bits; a page is never a duplicate of its own URL."""
    best: tuple[int, str] | None = None
    for key in band_keys(fingerprint, max_distance):
        for stored, stored_url in buckets.get(key, ()):
            distance = hamming(int(stored), fingerprint)
            if stored_url != url and distance <= max_distance and (best is None or distance < best[0]):
                best = (distance, str(stored_url))
    return best[1] if best else None


def remember(bucket: Iterable[Entry], fingerprint: int, url: str) -> list[list[int | str]]:
    """The bucket with this page's entry, replacing an older one of the same URL (a re-crawl), newest last."""
    kept = [[int(stored), str(stored_url)] for stored, stored_url in bucket if stored_url != url]
    return [*kept, [fingerprint, url]][-MAX_BUCKET:]


def check_and_remember(seen: MutableMapping[str, list], fingerprint: int, url: str, max_distance: int) -> str | None:
    """The URL this page nearly duplicates, or None, in which case the page is stored as an original.

    Only originals are stored, so `near_duplicate_of` always names a page that is not itself a duplicate.
    """
    original = find_original(seen, fingerprint, url, max_distance)
    if original is None:
        for key in band_keys(fingerprint, max_distance):
            seen[key] = remember(seen.get(key, ()), fingerprint, url)
    return original
