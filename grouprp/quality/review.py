"""The data-quality pass over one thread's cleaned posts: each detector in `data.quality` run in its mode.

Order, per post: OOC first (an aside left in would make the other detectors misread the post), impersonation on
model posts, low effort, then double posts among what is left. A post removed is removed under the first reason
that removes it; a post trimmed is counted once under each reason that trimmed it. What each detector found is
counted whatever its mode (`found`), so `flag` says what `trim` or `drop` would change.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional, Sequence

from grouprp.config import QualityConfig
from grouprp.quality.duplicates import ThreadSketch, double_posts, sketch_thread
from grouprp.quality.effort import literate, low_effort
from grouprp.quality.genres import Lexicon, load_lexicon, tag
from grouprp.quality.impersonation import find_impersonation
from grouprp.quality.ooc import ooc_only, ooc_spans, remove_spans
from grouprp.quality.text import words

DETECTORS = ("impersonation", "ooc", "duplicates", "low_effort")


@dataclass(frozen=True)
class Mark:
    """A span of a post a detector found: flagged (the text stays), or trimmed (`text` was taken out at
    `start`). Positions are in the post as kept."""

    start: int
    end: int
    reason: str
    action: str  # flagged | trimmed
    text: str = ""
    kind: str = ""  # the detector's own finer reason (an OOC span's kind, a low-effort post's why)


@dataclass
class Reviewed:
    """One post after the quality pass: kept (text, with marks), or removed under `removed_by`."""

    character: str
    text: str
    removed_by: Optional[str] = None
    marks: list[Mark] = field(default_factory=list)


@dataclass
class Findings:
    """What the pass found and did in one thread."""

    found: Counter = field(default_factory=Counter)  # detector -> posts it found something in
    removed: Counter = field(default_factory=Counter)  # reason -> posts removed
    changed: Counter = field(default_factory=Counter)  # reason -> posts trimmed
    kinds: Counter = field(default_factory=Counter)  # "ooc:link", "low_effort:short", ... (found)


@dataclass
class ThreadReview:
    """A thread after the quality pass: its posts, what was found, its sketch for repeats, and its genres."""

    posts: list[Reviewed]
    findings: Findings
    sketch: Optional[ThreadSketch]
    genres: tuple[str, ...]


class Quality:
    """The detectors of `data.quality`, built once per process (the genre lexicon is read here)."""

    def __init__(self, cfg: QualityConfig) -> None:
        self.cfg = cfg
        self.lexicon: Lexicon = load_lexicon(cfg.genres)

    def thread(self, title: str, posts: Sequence[tuple[str, str]], user: str) -> ThreadReview:
        """Review a thread's (character, cleaned text) posts; the user's character is `user`. Each post's words
        are read once and shared by the detectors that count words."""
        tokens = [words(text) for _, text in posts]
        d = self.cfg.duplicates
        sketch = sketch_thread(tokens, d.num_perm, d.max_words) if d.mode != "off" and posts else None
        genres = tag([words(title or ""), *tokens], self.lexicon)
        reviewed, findings = self.review(posts, user, tokens)
        return ThreadReview(reviewed, findings, sketch, genres)

    def review(self, posts: Sequence[tuple[str, str]], user: str,
               tokens: list[list[str]]) -> tuple[list[Reviewed], Findings]:
        """Each (character, cleaned text) post as the detectors leave it; the user's character is `user`, and
        `tokens` are each post's words."""
        cfg, findings = self.cfg, Findings()
        out = [Reviewed(character, text) for character, text in posts]
        tokens = list(tokens)
        cast = list(dict.fromkeys(character for character, _ in posts))
        vocabularies = [set(t) for t in tokens]
        if cfg.ooc.mode != "off":
            for post, vocabulary in zip(out, vocabularies):
                self._ooc(post, vocabulary, findings)
        if cfg.impersonation.mode != "off" and user:
            for post in out:
                if post.removed_by is None and post.character != user:
                    self._impersonation(post, user, cast, findings)
        for number, post in enumerate(out):  # a post the detectors changed has other words now
            if post.text is not posts[number][1]:
                tokens[number] = words(post.text)
                vocabularies[number] = set(tokens[number])
        if cfg.low_effort.mode != "off":
            thread_literate = literate([len(t) for p, t in zip(out, tokens) if p.removed_by is None],
                                       cfg.low_effort.literate_words)
            for post, post_tokens, vocabulary in zip(out, tokens, vocabularies):
                if post.removed_by is None:
                    why = low_effort(post.text, post_tokens, thread_literate, cfg.low_effort, len(vocabulary))
                    if why is not None:
                        self._whole(post, "low_effort", cfg.low_effort.mode, why, findings)
        if cfg.duplicates.mode != "off":
            kept = [(p, t) for p, t in zip(out, tokens) if p.removed_by is None]
            repeats = double_posts([(p.character, t) for p, t in kept], cfg.duplicates.threshold)
            for (post, _), first in zip(kept, repeats):
                if first is not None:
                    self._whole(post, "duplicates", cfg.duplicates.mode, "double_post", findings)
        return out, findings
    def _ooc(self, post: Reviewed, vocabulary: set[str], findings: Findings) -> None:
        spans = ooc_spans(post.text, vocabulary)
        if not spans:
            return
        mode = self.cfg.ooc.mode
        findings.found["ooc"] += 1
        findings.kinds.update(f"ooc:{s.kind}" for s in spans)
        if mode == "drop" or (mode == "trim" and ooc_only(post.text, spans)):
            post.removed_by = "ooc"
            findings.removed["ooc"] += 1
        elif mode == "trim":
            text, positions = remove_spans(post.text, spans)
            post.marks = [Mark(at, at, "ooc", "trimmed", post.text[s.start:s.end], s.kind)
                          for s, at in zip(spans, positions)]
            post.text = text
            findings.changed["ooc"] += 1
        else:
            post.marks = [Mark(s.start, s.end, "ooc", "flagged", kind=s.kind) for s in spans]

    def _impersonation(self, post: Reviewed, user: str, cast: list[str], findings: Findings) -> None:
        found = find_impersonation(post.text, user, cast)
        if not found.sentences:
            return
        mode = self.cfg.impersonation.mode
        findings.found["impersonation"] += 1
        findings.kinds["impersonation:tail" if found.tail is not None else "impersonation:inside"] += 1
        if mode == "drop":
            post.removed_by = "impersonation"
            findings.removed["impersonation"] += 1
            return
        cut = found.tail if mode == "trim" else None
        if cut is not None and not post.text[:cut].strip():
            post.removed_by = "impersonation"  # the whole post speaks for the user
            findings.removed["impersonation"] += 1
            return
        marks = [Mark(s, e, "impersonation", "flagged", kind="sentence")
                 for s, e in (found.inside if cut is not None else found.sentences)]
        if cut is not None:
            kept = post.text[:cut].rstrip()
            marks.append(Mark(len(kept), len(kept), "impersonation", "trimmed", post.text[len(kept):], "tail"))
            post.marks = [m for m in post.marks if m.end <= len(kept)]
            post.text = kept
            findings.changed["impersonation"] += 1
        post.marks = sorted(post.marks + marks, key=lambda m: (m.start, m.end))

    @staticmethod
    def _whole(post: Reviewed, reason: str, mode: str, kind: str, findings: Findings) -> None:
        """A detector that judges a whole post: drop it, or mark all of it."""
        findings.found[reason] += 1
        findings.kinds[f"{reason}:{kind}"] += 1
        if mode == "drop":
            post.removed_by = reason
            findings.removed[reason] += 1
        else:
            post.marks = post.marks + [Mark(0, len(post.text), reason, "flagged", kind=kind)]
