"""What the detectors need to read a post: where its quoted speech is, and where its sentences are."""

from __future__ import annotations

import re
from typing import Optional

_TOKEN = re.compile(r"\w+(?:['\u2019]\w+)*")
_QUOTE = re.compile('"[^"]*"?|\u201c[^\u201d\n]*\u201d?|\u00ab[^\u00bb\n]*\u00bb?|\u300c[^\u300d\n]*\u300d?')
_LOWER_NEXT = re.compile(r"[ \t]+[a-z]")
_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)*_]*(?=\s)|\n+")


def quoted(text: str) -> list[tuple[int, int]]:
    """The spans of quoted speech ("...", \u201c...\u201d): in a roleplay post, what a character says. A straight
    quote left open runs to the end of the post; a typographic one, to the end of its line."""
    if '"' not in text and "\u201c" not in text and "\u00ab" not in text and "\u300c" not in text:
        return []
    return [match.span() for match in _QUOTE.finditer(text)]


def inside(position: int, spans: list[tuple[int, int]]) -> bool:
    return any(start <= position < end for start, end in spans)


def sentences(text: str, speech: Optional[list[tuple[int, int]]] = None) -> list[tuple[int, int]]:
    """Sentence spans (leading spaces excluded): split after . ! ? … (and any closing quote or markup) or at line
    breaks, never inside quoted speech (`speech`: quoted(text), when the caller has it)."""
    speech = quoted(text) if speech is None else speech
    out, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        if match.group().strip() and any(a < match.start() and match.end() < b for a, b in speech):
            continue  # a full stop inside a character's words (not the one that closes them) ends nothing
        if _LOWER_NEXT.match(text, match.end()):
            continue  # '"Now?" asked Ilsa.': a dialogue tag goes on the sentence
        end = match.end()
        out.append((start, end))
        start = end
    out.append((start, len(text)))
    result = []
    for begin, end in out:
        while begin < end and text[begin].isspace():
            begin += 1
        if begin < end and text[begin:end].strip():
            result.append((begin, end))
    return result


def words(text: str) -> list[str]:
    """A post's words, lower-cased (letters, digits and inner apostrophes): what every detector that counts words
    reads, computed once per post."""
    return _TOKEN.findall(text.lower())

