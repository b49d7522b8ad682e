"""Genre balance: each thread tagged with genres from a word lexicon, and a cap on the share of any one genre.

A thread's genres are those whose lexicon words it uses at least `MIN_HITS` times and at least half as often as
its most used genre, in order; the first is its main genre. A thread that uses no genre's words enough is
`untagged`. Shares are of main genres among the threads kept, and `data.quality.max_genre_share` leaves out
whole threads of any genre above it, chosen at random with `data.quality.seed`.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import yaml

from grouprp.config import ConfigError

SHIPPED = Path(__file__).with_name("genres.yaml")
UNTAGGED = "untagged"
MIN_HITS = 3  # a genre's words used fewer times than this are chance ("a sword on the wall" in a modern thread)
MAX_WORDS = 2000  # the start of a long thread says what it is


@dataclass(frozen=True)
class Lexicon:
    words: dict[str, frozenset[str]]  # genre -> single words
    phrases: dict[str, frozenset[str]]  # genre -> two-word phrases ("secret identity")

    @property
    def starts(self) -> frozenset[str]:
        """The first words of the phrases (only pairs starting with one are counted)."""
        return frozenset(p.split()[0] for phrases in self.phrases.values() for p in phrases)


def load_lexicon(extra: Optional[str] = None) -> Lexicon:
    """The shipped lexicon, with the words of the user's file (data.quality.genres) added."""
    merged: dict[str, set[str]] = {}
    for path, key in ((SHIPPED, "grouprp/quality/genres.yaml"), (extra, "data.quality.genres")):
        if path is None:
            continue
        for genre, words in _read(Path(path), key).items():
            merged.setdefault(genre, set()).update(" ".join(w.lower().replace("-", " ").split()) for w in words)
    single = {g: frozenset(w for w in ws if " " not in w) for g, ws in merged.items()}
    double = {g: frozenset(w for w in ws if " " in w) for g, ws in merged.items()}
    return Lexicon(single, double)


def _read(path: Path, key: str) -> dict[str, list[str]]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{key}: {where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{key}: {path} must map each genre to a list of words, e.g. `noir: [detective, rain]`")
    for genre, words in raw.items():
        if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
            raise ConfigError(f"{key}: {path}: genre {genre!r} must be a list of words, e.g. `{genre}: [a, b]`")
        long = [w for w in words if len(w.replace("-", " ").split()) > 2]
        if long:
            raise ConfigError(f"{key}: {path}: genre {genre!r}: {long[0]!r} is longer than two words; the lexicon "
                              "holds words and two-word phrases")
        if str(genre) == UNTAGGED:
            raise ConfigError(f"{key}: {path}: {UNTAGGED!r} names the threads of no genre; use another name")
    return {str(g): [w.strip() for w in ws] for g, ws in raw.items()}


def tag(posts: Iterable[Sequence[str]], lexicon: Lexicon) -> tuple[str, ...]:
    """The genres of a thread from its words (quality.text.words of its title and each post), main genre first;
    () when untagged."""
    counts: Counter = Counter()
    seen = 0
    tokens: list[str] = []
    starts = lexicon.starts
    for words in posts:
        take = words[:MAX_WORDS - seen]
        counts.update(take)
        if starts:
            tokens.extend(take)
        seen += len(take)
        if seen >= MAX_WORDS:
            break
    pairs = Counter(f"{a} {b}" for a, b in zip(tokens, tokens[1:]) if a in starts)
    hits = {genre: sum(counts[w] for w in words if w in counts) + sum(pairs[p] for p in lexicon.phrases[genre]
                                                                      if p in pairs)
            for genre, words in lexicon.words.items()}
    top = max(hits.values(), default=0)
    if top < MIN_HITS:
        return ()
    return tuple(sorted((g for g, n in hits.items() if n >= MIN_HITS and 2 * n >= top), key=lambda g: (-hits[g], g)))


def main_genre(genres: Sequence[str]) -> str:
    return genres[0] if genres else UNTAGGED


def shares(main_genres: Iterable[str]) -> dict[str, float]:
    counts = Counter(main_genres)
    total = sum(counts.values())
    return {g: round(n / total, 4) for g, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))} if total else {}


def over_cap(main_genres: Sequence[str], max_share: float, seed: int) -> set[int]:
    """Indices of threads to leave out so that no genre (untagged aside) is more than `max_share` of the threads
    kept, leaving out as few as that takes; which threads of a genre go is chosen with `seed`.

    Keeping T threads is possible when the untagged ones plus, for each genre, the fewer of its count and
    floor(max_share * T) make at least T; the largest such T is kept. Raises ValueError when only an empty set
    satisfies the cap (too few genres for it), saying what cap would do."""
    counts = Counter(main_genres)
    untagged = counts.pop(UNTAGGED, 0)
    total = len(main_genres)

    def allowed(kept: int) -> int:
        return int(max_share * kept + 1e-9)

    kept = next((t for t in range(total, 0, -1)
                 if untagged + sum(min(c, allowed(t)) for c in counts.values()) >= t), 0)
    if total and not kept:
        raise ValueError(f"no threads can be kept with no genre above {max_share}: the threads' main genres are "
                         f"{shares(main_genres)}; with {len(counts)} genre(s) and no untagged threads the cap must "
                         f"be at least {1 / max(len(counts), 1):.2f}")
    rng = random.Random(seed)
    out: set[int] = set()
    for genre in sorted(counts):
        members = [i for i, m in enumerate(main_genres) if m == genre]
        excess = len(members) - min(len(members), allowed(kept))
        if excess > 0:
            out.update(rng.sample(members, excess))
    return out
