"""Low-effort and degenerate posts: a one-liner in a thread whose writers write paragraphs, a post that repeats
itself, a post that is mostly not words (emoji, symbols, keyboard mashing of punctuation)."""

from __future__ import annotations

import re
from statistics import median
from typing import Optional, Sequence

_LETTER = re.compile(r"[^\W\d_]")
_DIGIT = re.compile(r"[\d_]")
REASONS = ("short", "repetition", "non_text")
"""Why a post is low effort: short for its thread, repeating itself, or mostly not text."""

REPETITION_MIN_WORDS = 20  # below this, a repeated phrase is a style ("No. No. No."), not a degenerate post
NON_TEXT_MIN_CHARS = 8  # "..." or "*nods*" alone are not judged by their share of letters


def literate(word_counts: Sequence[int], literate_words: int) -> bool:
    """A thread whose median post has at least `literate_words` words."""
    return bool(word_counts) and median(word_counts) >= literate_words


def low_effort(text: str, tokens: Sequence[str], thread_literate: bool, cfg,
               distinct: Optional[int] = None) -> Optional[str]:
    """Why a post is low effort (one of REASONS), or None. `tokens` are its words (quality.text.words), `distinct`
    how many different ones there are, when the caller knows; `cfg` is data.quality.low_effort."""
    if thread_literate and len(tokens) < cfg.min_words:
        return "short"
    visible = len(text) - text.count(" ") - text.count("\n") - text.count("\t")
    if visible >= NON_TEXT_MIN_CHARS:
        least = cfg.min_letters * visible
        # the words' length counts letters (and digits, and inner apostrophes): exact only when it has to be
        if sum(map(len, tokens)) < least or (_DIGIT.search(text) and len(_LETTER.findall(text)) < least):
            return "non_text"
    if len(tokens) >= REPETITION_MIN_WORDS and repetition(tokens, cfg.max_repetition, distinct) > cfg.max_repetition:
        return "repetition"
    return None


def repetition(tokens: Sequence[str], at_most: float = -1.0, distinct: Optional[int] = None) -> float:
    """The share of a post's word 3-grams that repeat an earlier one: 0 for prose, near 1 for a loop. When the
    distinct words alone show it is at most `at_most`, that bound is returned without counting the 3-grams (each
    distinct word starts a distinct 3-gram, the last two aside)."""
    grams = len(tokens) - 2
    if grams <= 0:
        return 0.0
    bound = 1 - max((len(set(tokens)) if distinct is None else distinct) - 2, 0) / grams
    if bound <= at_most:
        return bound
    return 1 - len(set(zip(tokens, tokens[1:], tokens[2:]))) / grams
