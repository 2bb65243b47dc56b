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

Sharded (`shards` > 1): each band key belongs to one shard (`shard_of_band`), and a shard's
`BandIndex` files pages under its own band keys only. A page visits the shards one after another
(`ShardStep`): each looks the page up under its bands, keeps the nearest match so far, and files
the page as an original while no shard has matched it yet. A page that a later shard matches is
`retract`ed from the shards that filed it. Two pages with a band in common meet on that band's
shard, which sees them one after the other: the later one finds the earlier if it was filed there,
as with one shard. With one shard, a step is exactly `check_and_remember`.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from array import array
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BITS",
    "SHINGLE_WORDS",
    "BandIndex",
    "Nearest",
    "ShardOriginals",
    "band_keys",
    "check_and_remember",
    "hamming",
    "original_key",
    "retract",
    "shard_of_band",
    "shard_of_key",
    "shard_step",
    "simhash",
    "simhashes",
]

BITS = 64
SHINGLE_WORDS = 3

_WORD = re.compile(r"\w+")
# Shingle hashes are combined from word hashes: a word is hashed once per process, not once per shingle.
_WORD_CACHE = 1 << 16
_COMBINE = np.uint64(0x9E3779B97F4A7C15)
# Row v: the bits of the byte value v, lowest first.
_BITS_OF_BYTE = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little").astype(np.int64)


class _WordHashes(dict[str, int]):
    """word -> its 64-bit hash; a plain dict lookup when known (cheaper per word than `functools.lru_cache`)."""

    def __missing__(self, word: str) -> int:
        if len(self) >= _WORD_CACHE:
            self.clear()  # bounded, and the words of a site's pages come back soon enough to be worth keeping
        hashed = self[word] = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        return hashed


_word_hashes = _WordHashes()


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit flips about half the output bits (uint64 arithmetic wraps)."""
    values = values ^ (values >> np.uint64(30))
    values = values * np.uint64(0xBF58476D1CE4E5B9)
    values = values ^ (values >> np.uint64(27))
    values = values * np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))


def simhash(text: str, *, shingle_words: int = SHINGLE_WORDS) -> int:
    """64-bit SimHash of the text's lower-cased word shingles, each shingle counted once."""
    return simhashes([text], shingle_words=shingle_words)[0]


def simhashes(texts: Sequence[str], *, shingle_words: int = SHINGLE_WORDS) -> list[int]:
    """`simhash` of each text, computed for all of them at once: numpy's cost per call is paid per batch, not per page."""
    if not texts:
        return []
    words = [_WORD.findall(text.casefold()) or [""] for text in texts]
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    hashes = np.fromiter(
        map(_word_hashes.__getitem__, itertools.chain.from_iterable(words)), dtype=np.uint64, count=int(lengths.sum())
    )
    # A text of n words has max(1, n - shingle_words + 1) shingles; shingle j folds words j.. j+width-1 in.
    counts = np.maximum(1, lengths - shingle_words + 1)
    ends = np.cumsum(counts)
    starts = ends - counts
    text_of = np.repeat(np.arange(len(texts)), counts)
    # Shingle j of a text begins at the text's first word + j.
    first_word = (np.cumsum(lengths) - lengths)[text_of] + np.arange(int(ends[-1])) - starts[text_of]
    width = np.minimum(shingle_words, lengths)[text_of]
    shingles = np.zeros(len(text_of), dtype=np.uint64)
    for position in range(shingle_words):
        folds = position < width
        word = hashes[np.where(folds, first_word + position, 0)]
        shingles = np.where(folds, _mix(shingles * _COMBINE + word), shingles)
    # Each shingle counted once per text: each text's shingles sorted in place, repeats dropped.
    for low, high in zip(starts.tolist(), ends.tolist()):
        shingles[low:high].sort()
    distinct = np.ones(len(shingles), dtype=bool)
    distinct[1:] = (shingles[1:] != shingles[:-1]) | (text_of[1:] != text_of[:-1])
    shingles, text_of = shingles[distinct], text_of[distinct]
    # How many of a text's shingles have each of the 64 bits set, a byte at a time: a histogram of
    # the byte's values per text, times which bits each value has.
    byte_values = shingles.astype("<u8").view(np.uint8).reshape(-1, 8)
    ones = np.empty((len(texts), BITS), dtype=np.int64)
    for byte in range(8):
        histogram = np.bincount(text_of * 256 + byte_values[:, byte], minlength=len(texts) * 256)
        ones[:, 8 * byte : 8 * byte + 8] = histogram.reshape(len(texts), 256) @ _BITS_OF_BYTE
    # A bit of a text's fingerprint is set where most of its shingles have it set.
    majority = 2 * ones > np.bincount(text_of, minlength=len(texts))[:, None]
    return np.packbits(majority, axis=1, bitorder="little").view("<u8").ravel().tolist()


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def band_keys(fingerprint: int, max_distance: int) -> list[int]:
    """The index keys of a fingerprint, one per band of `max_distance + 1`: the band's number, then its bits."""
    bands = max_distance + 1
    if not 1 <= bands <= BITS:
        raise ValueError(f"max_distance must be between 0 and {BITS - 1}, got {max_distance}")
    bounds = [BITS * i // bands for i in range(bands + 1)]
    return [
        i << BITS | fingerprint >> low & ((1 << high - low) - 1)
        for i, (low, high) in enumerate(zip(bounds, bounds[1:]))
    ]


def shard_of_band(key: int, shards: int) -> int:
    """The shard that owns a band key: a stable hash of the key (the same in every process), modulo `shards`."""
    if shards == 1:
        return 0
    digest = hashlib.blake2b(key.to_bytes(9, "little"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % shards


class _Bucket:
    """The pages filed under one band key: fingerprints in a growable uint64 array (compared in numpy), URLs beside."""

    __slots__ = ("fingerprints", "urls")

    def __init__(self) -> None:
        self.fingerprints = array("Q")
        self.urls: list[str] = []

    def add(self, fingerprint: int, url: str) -> None:
        self.fingerprints.append(fingerprint)
        self.urls.append(url)

    def discard(self, url: str) -> None:
        for position in reversed([n for n, stored in enumerate(self.urls) if stored == url]):
            del self.fingerprints[position]
            del self.urls[position]

    def within(self, fingerprint: int, max_distance: int) -> list[tuple[int, str]]:
        """(distance, url) of the pages at most `max_distance` bits from `fingerprint`."""
        stored = np.frombuffer(self.fingerprints, dtype=np.uint64)
        distances = np.bitwise_count(stored ^ np.uint64(fingerprint))
        return [(int(distances[n]), self.urls[n]) for n in np.flatnonzero(distances <= max_distance)]


class BandIndex:
    """Original pages filed by band key: the candidates within `max_distance` bits of a fingerprint.

    Buckets are not capped: every original stays findable, and a lookup compares a band's pages in
    numpy (7 buckets of ~2,000 pages at a million originals, tens of microseconds).
    """

    def __init__(self, max_distance: int, *, shard: int = 0, shards: int = 1) -> None:
        band_keys(0, max_distance)  # validates the distance
        if not 0 <= shard < shards:
            raise ValueError(f"shard must be between 0 and {shards - 1}, got {shard}")
        self.max_distance = max_distance
        self.shard, self.shards = shard, shards
        self._buckets: dict[int, _Bucket] = {}

    @classmethod
    def of(
        cls, originals: Iterable[tuple[str, int]], max_distance: int, *, shard: int = 0, shards: int = 1
    ) -> BandIndex:
        """The index of `(url, fingerprint)` pairs."""
        index = cls(max_distance, shard=shard, shards=shards)
        for url, fingerprint in originals:
            index.add(url, int(fingerprint))
        return index

    def __len__(self) -> int:
        return sum(len(bucket.urls) for bucket in self._buckets.values())

    def keys(self, fingerprint: int) -> list[int]:
        """The fingerprint's band keys that this index's shard owns."""
        keys = band_keys(fingerprint, self.max_distance)
        if self.shards == 1:
            return keys
        return [key for key in keys if shard_of_band(key, self.shards) == self.shard]

    def add(self, url: str, fingerprint: int) -> None:
        for key in self.keys(fingerprint):
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket()
            bucket.add(fingerprint, url)

    def discard(self, url: str, fingerprint: int) -> None:
        for key in self.keys(fingerprint):
            bucket = self._buckets.get(key)
            if bucket is not None:
                bucket.discard(url)

    def find_original(self, fingerprint: int, url: str) -> str | None:
        """URL of the closest filed page within the distance; a page is never a duplicate of its own URL."""
        nearest = self.find_nearest(fingerprint, url)
        return nearest.url if nearest else None

    def find_nearest(self, fingerprint: int, url: str) -> Nearest | None:
        """The closest filed page within the distance under this shard's bands (of equal ones, the first found)."""
        best: Nearest | None = None
        for key in self.keys(fingerprint):
            bucket = self._buckets.get(key)
            if bucket is None:
                continue
            for distance, stored_url in bucket.within(fingerprint, self.max_distance):
                if stored_url != url and (best is None or distance < best.distance):
                    best = Nearest(distance, stored_url)
        return best


@dataclass(frozen=True)
class Nearest:
    """The closest original found so far for a page, and how many bits apart."""

    distance: int
    url: str


def original_key(shard: int, url: str) -> str:
    """A shard's table key for an original: shard 0's is the bare URL (the key from before sharding, so a
    one-shard table reads on as it was), another shard's the shard number, a space, then the URL (a
    normalized URL has no space)."""
    return url if shard == 0 else f"{shard} {url}"


def shard_of_key(key: str) -> tuple[int, str]:
    """`original_key`'s inverse: (shard, url)."""
    shard, space, url = key.partition(" ")
    if space and shard.isdigit():
        return int(shard), url
    return 0, key


class ShardOriginals(MutableMapping[str, int]):
    """One shard's originals (URL -> fingerprint) inside the table of every shard, keyed by `original_key`."""

    def __init__(self, table: MutableMapping[str, int], shard: int) -> None:
        self._table, self._shard = table, shard

    def __getitem__(self, url: str) -> int:
        return self._table[original_key(self._shard, url)]

    def __setitem__(self, url: str, fingerprint: int) -> None:
        self._table[original_key(self._shard, url)] = fingerprint

    def __delitem__(self, url: str) -> None:
        del self._table[original_key(self._shard, url)]

    def __iter__(self) -> Iterator[str]:
        return (url for shard, url in map(shard_of_key, self._table) if shard == self._shard)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def check_and_remember(originals: MutableMapping[str, int], index: BandIndex, fingerprint: int, url: str) -> str | None:
    """The URL this page nearly duplicates, or None, in which case it is stored (and filed) as an original.

    Only originals are stored, so `near_duplicate_of` always names a page that is not itself a duplicate.
    `originals` is written only when the URL's fingerprint changes: a re-crawl of an unchanged page costs
    no changelog record.
    """
    nearest, _ = shard_step(originals, index, fingerprint, url, None)
    return nearest.url if nearest else None


def shard_step(
    originals: MutableMapping[str, int], index: BandIndex, fingerprint: int, url: str, nearest: Nearest | None
) -> tuple[Nearest | None, bool]:
    """One shard's part of a page's verdict: the nearest original so far, and whether this shard filed the page.

    `nearest` is what the shards before this one found. The page is filed here (as an original, in
    `originals` and `index`) only while no shard has matched it: once matched it is no original, and a
    shard after the first match need not know it. Of two equally near originals the earlier shard's stays.
    """
    found = index.find_nearest(fingerprint, url)
    if found is not None and (nearest is None or found.distance < nearest.distance):
        nearest = found
    if nearest is not None:
        return nearest, False
    previous = originals.get(url)
    if previous != fingerprint:
        if previous is not None:
            index.discard(url, int(previous))
        originals[url] = fingerprint
        index.add(url, fingerprint)
    return None, True


def retract(originals: MutableMapping[str, int], index: BandIndex, fingerprint: int, url: str) -> bool:
    """Unfile a page that a later shard found to be a near duplicate; False when this shard holds another
    fingerprint for the URL (a newer fetch, filed since) or none."""
    if originals.get(url) != fingerprint:
        return False
    del originals[url]
    index.discard(url, fingerprint)
    return True
