"""Duplicates: a thread reposted or scraped twice, and a post submitted twice within its thread.

Threads are compared by the Jaccard similarity of their word 5-grams, estimated with datasketch's MinHash and
looked up with its LSH index, so each thread is compared with the few that could be copies rather than with all
of them. The sketch of a thread is made where the thread is built (in the worker processes); the index lives in
the process that collects the outcomes, which sees the threads in input order, so the first copy is the one kept.
Double posts are compared exactly (5-gram sets), only with earlier posts of the same character in the thread.
"""

from __future__ import annotations

import hashlib
import itertools
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence

import numpy as np

SHINGLE = 5  # words per shingle: long enough that two different stories share few, short enough to survive edits
MIN_POST_WORDS = 12  # shorter posts are never double posts: "*nods*" twice is a character repeating itself
ENDS = 8  # a double post shares its first or its last this many words with the post it repeats
_MIX = np.uint64(0x9E3779B1)
_CRC: dict[str, int] = {}  # word -> crc32, per process: words repeat, and hashing them was half the time


def _crc(word: str) -> int:
    value = _CRC.get(word)
    if value is None:
        if len(_CRC) > 1 << 20:
            _CRC.clear()
        value = _CRC[word] = zlib.crc32(word.encode())
    return value


def shingle_hashes(tokens: Sequence[str]) -> np.ndarray:
    """32-bit hashes of the word 5-grams (crc32 of each word, combined in order; the same on every run)."""
    if len(tokens) < SHINGLE:
        return np.zeros(0, dtype=np.uint32)
    each = np.fromiter(map(_crc, tokens), dtype=np.uint64, count=len(tokens))
    combined = np.zeros(len(tokens) - SHINGLE + 1, dtype=np.uint64)
    for offset in range(SHINGLE):
        combined = (combined * _MIX + each[offset:offset + len(combined)]) & np.uint64(0xFFFFFFFFFFFF)
    return (combined ^ (combined >> np.uint64(32))).astype(np.uint32)


@lru_cache(maxsize=4)
def _permutations(num_perm: int):
    from datasketch import MinHash

    return MinHash(num_perm=num_perm, seed=1, scheme="affine32").permutations


def _minhash(num_perm: int, hashvalues=None):
    from datasketch import MinHash

    return MinHash(num_perm=num_perm, hashfunc=int, hashvalues=hashvalues, permutations=_permutations(num_perm),
                   scheme="affine32")


@dataclass(frozen=True)
class ThreadSketch:
    """What a thread is compared by: a digest of its exact text and the MinHash of its start (None when it has
    fewer words than one shingle)."""

    digest: str
    hashvalues: Optional[np.ndarray]


def sketch_thread(posts: Sequence[Sequence[str]], num_perm: int, max_words: int) -> ThreadSketch:
    """The sketch of a thread from its posts' words (quality.text.words of each cleaned post, in order)."""
    digest = hashlib.sha1()
    for post in posts:
        digest.update(" ".join(post).encode())
        digest.update(b"\n")
    hashes = shingle_hashes(list(itertools.islice(itertools.chain.from_iterable(posts), max_words)))
    if not len(hashes):
        return ThreadSketch(digest.hexdigest(), None)
    minhash = _minhash(num_perm)
    minhash.update_batch(np.unique(hashes))
    return ThreadSketch(digest.hexdigest(), np.asarray(minhash.hashvalues))


@dataclass(frozen=True)
class Copy:
    """A thread found to be a copy: of which earlier thread, how similar (estimated), and whether exactly."""

    of: str
    similarity: float
    exact: bool


class ThreadIndex:
    """Threads seen so far; each new one is either a copy of one of them or added as a first copy."""

    def __init__(self, threshold: float, num_perm: int) -> None:
        from datasketch import MinHashLSH

        self.threshold = threshold
        self.num_perm = num_perm
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.digests: dict[str, str] = {}
        self.sketches: dict[str, object] = {}

    def add(self, key: str, sketch: ThreadSketch) -> Optional[Copy]:
        """The earlier thread `key` copies, or None (and `key` is remembered as a first copy)."""
        first = self.digests.get(sketch.digest)
        if first is not None:
            return Copy(first, 1.0, True)
        minhash = _minhash(self.num_perm, sketch.hashvalues) if sketch.hashvalues is not None else None
        if minhash is not None:
            best = None
            for candidate in self.lsh.query(minhash):
                similarity = minhash.jaccard(self.sketches[candidate])
                if similarity >= self.threshold and (best is None or similarity > best[1]):
                    best = (candidate, similarity)
            if best is not None:
                return Copy(best[0], round(float(best[1]), 3), False)
            self.lsh.insert(key, minhash)
            self.sketches[key] = minhash
        self.digests[sketch.digest] = key
        return None


def double_posts(posts: Sequence[tuple[str, Sequence[str]]], threshold: float) -> list[Optional[int]]:
    """For each (character, words) post, the index of an earlier post by the same character it repeats, or None.
    A repeat has at least MIN_POST_WORDS words, shares its first or last ENDS words with the earlier post (a post
    submitted twice, perhaps edited in the middle; checking this first keeps the cost linear) and the Jaccard
    similarity of their word 5-gram sets is at least `threshold`."""
    seen: dict[tuple, list[int]] = {}
    grams: dict[int, frozenset] = {}
    out: list[Optional[int]] = []
    for index, (character, tokens) in enumerate(posts):
        if len(tokens) < MIN_POST_WORDS:
            out.append(None)
            continue
        keys = ((character, "first", tuple(tokens[:ENDS])), (character, "last", tuple(tokens[-ENDS:])))
        candidates = dict.fromkeys(j for key in keys for j in seen.get(key, ()))
        found = None
        for earlier in candidates:
            for j in (earlier, index):
                if j not in grams:
                    words = posts[j][1]
                    grams[j] = frozenset(zip(*(words[i:] for i in range(SHINGLE))))
            if _jaccard(grams[index], grams[earlier], threshold) >= threshold:
                found = earlier
                break
        out.append(found)
        if found is None:
            for key in keys:
                seen.setdefault(key, []).append(index)
    return out


def _jaccard(a: frozenset, b: frozenset, threshold: float) -> float:
    """Jaccard similarity of two sets, or 0 when their sizes alone keep it under `threshold`."""
    if min(len(a), len(b)) < threshold * max(len(a), len(b)):
        return 0.0  # |A & B| / |A | B| is at most min / max
    shared = len(a & b)
    return shared / (len(a) + len(b) - shared)
