"""Thread -> Entry: who posts as whom, cleaning, the user's character, the entry filters, and their accounting.

Every thread read is counted once: kept, or dropped under exactly one reason. Every post removed on the way is
counted under its reason. `Accounting` is what `manifest.json` reports.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional, Union

from grouprp.clean import clean_name, clean_post, strip_control_characters
from grouprp.config import DataConfig
from grouprp.quality.duplicates import ThreadSketch
from grouprp.quality.review import Findings, Quality
from grouprp.schema import Entry, RemovedPost, Thread, Turn
from grouprp.sheets import SheetSchema, render_bio

DROP_REASONS = ("too_few_turns", "too_few_characters", "too_many_characters", "malformed", "too_long", "duplicates",
                "max_genre_share")
POST_REASONS = ("empty", "ooc", "trailing_user", "impersonation", "low_effort", "duplicates")
CHANGE_REASONS = ("control_characters", "ooc", "impersonation")
"""Why a kept post (or script line) was changed beyond cleaning: control characters (NUL, ...) removed, OOC text or
an impersonating tail trimmed (data.quality)."""
WINDOW_REASONS = ("too_few_turns", "too_few_characters", "too_many_characters", "too_long")
"""Why a window of a long entry was dropped: a filter it failed, or too_long for a post that fits no window."""


@dataclass
class Accounting:
    """Counts of what happened to every entry and post read."""

    entries_in: int = 0
    entries_kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    posts_removed: Counter = field(default_factory=Counter)
    posts_changed: Counter = field(default_factory=Counter)  # posts kept with something taken out, by reason
    windows_dropped: Counter = field(default_factory=Counter)
    found: Counter = field(default_factory=Counter)  # data.quality: posts each detector found, whatever its mode
    kinds: Counter = field(default_factory=Counter)  # data.quality: the same, by the detector's finer reason
    left_out: Counter = field(default_factory=Counter)  # input deliberately not used, e.g. unused sheet rows

    def add(self, outcome) -> None:
        """Count what one record became (a modes.Outcome): kept, or dropped under its reason."""
        if outcome.rows:
            self.entries_kept += 1
        else:
            self.dropped[outcome.drop] += 1
        self.posts_removed.update(outcome.posts_removed)
        self.posts_changed.update(outcome.posts_changed)
        self.windows_dropped.update(outcome.windows_dropped)
        if outcome.findings is not None:
            self.found.update(outcome.findings.found)
            self.kinds.update(outcome.findings.kinds)

    def to_dict(self) -> dict:
        return {
            "entries_in": self.entries_in,
            "entries_kept": self.entries_kept,
            "dropped": {r: self.dropped.get(r, 0) for r in DROP_REASONS},
            "posts_removed": {r: self.posts_removed.get(r, 0) for r in POST_REASONS},
            "posts_changed": {r: self.posts_changed.get(r, 0) for r in CHANGE_REASONS},
            "windows_dropped": {r: self.windows_dropped.get(r, 0) for r in WINDOW_REASONS},
            "left_out": dict(sorted(self.left_out.items())),
        }

    def check(self) -> None:
        assert self.entries_in == self.entries_kept + sum(self.dropped.values()), (
            f"accounting lost entries: {self.entries_in} in, {self.entries_kept} kept, dropped {dict(self.dropped)}")


@dataclass(frozen=True)
class Dropped:
    reason: str
    posts_removed: Counter
    posts_changed: Counter = field(default_factory=Counter)
    findings: Optional[Findings] = None


@dataclass(frozen=True)
class Kept:
    entry: Entry
    posts_removed: Counter
    posts_changed: Counter = field(default_factory=Counter)
    findings: Optional[Findings] = None
    sketch: Optional[ThreadSketch] = None  # data.quality.duplicates: what the thread is compared by


def build_entry(thread: Thread, cfg: DataConfig, schema: SheetSchema,
                quality: Optional[Quality] = None) -> Union[Kept, Dropped]:
    """Clean a thread's posts, assign roles, run the data-quality detectors, drop trailing user posts, and apply
    the entry filters."""
    removed: Counter = Counter()
    changed: Counter = Counter()
    players = Counter(c.player for c in thread.characters if c.player)
    character_of_player = {c.player: clean_name(c.name) for c in thread.characters
                           if c.player and players[c.player] == 1}
    posts, left_out = [], []
    for post in thread.posts:
        raw, controls = strip_control_characters(post.text)
        text, reason = clean_post(raw)
        character = clean_name(post.character or "") or character_of_player.get(post.author) or clean_name(
            post.author or "")
        if reason:
            removed[reason] += 1
            left_out.append((len(posts), character, raw, reason))
            continue
        if controls:
            changed["control_characters"] += 1
        posts.append((character, text))
    user = clean_name(thread.user or "") or (posts[0][0] if posts else "")
    findings, sketch, genres = None, None, ()
    if quality is not None:
        review = quality.thread(thread.title or "", posts, user)
        reviewed, findings, sketch, genres = review.posts, review.findings, review.sketch, review.genres
        removed.update(findings.removed)
        changed.update(findings.changed)
        # a removed post stood before the posts after it: number it among the turns that are kept
        kept_before = list(itertools.accumulate((p.removed_by is None for p in reviewed), initial=0))
        left_out = [(kept_before[i], *rest) for i, *rest in left_out]
        left_out += [(kept_before[i], p.character, p.text, p.removed_by) for i, p in enumerate(reviewed)
                     if p.removed_by is not None]
        turns = [Turn(p.character, p.text, "user" if p.character == user else "model", tuple(p.marks))
                 for p in reviewed if p.removed_by is None]
    else:
        turns = [Turn(c, t, "user" if c == user else "model") for c, t in posts]
    while turns and turns[-1].role == "user":
        last = turns.pop()
        removed["trailing_user"] += 1
        left_out.append((len(turns), last.character, last.text, "trailing_user"))
    entry = Entry(id=thread.id, user=user, turns=tuple(turns), bios=_bios(thread, turns, user, schema),
                  removed=tuple(RemovedPost(*item) for item in sorted(left_out, key=lambda item: item[0])),
                  genres=genres)
    reason = filter_reason(entry, cfg)
    if reason:
        return Dropped(reason, removed, changed, findings)
    return Kept(entry, removed, changed, findings, sketch)


def filter_reason(entry: Entry, cfg: DataConfig) -> Optional[str]:
    """The first filter an entry (or window) fails, or None when it passes them all."""
    if len(entry.turns) < cfg.min_turns:
        return "too_few_turns"
    n = len(entry.characters)
    if n < cfg.min_characters:
        return "too_few_characters"
    if n > cfg.max_characters:
        return "too_many_characters"
    return None


def _bios(thread: Thread, turns: list[Turn], user: str, schema: SheetSchema) -> dict[str, str]:
    """Rendered sheets of the user and the posting characters; characters without a sheet are left out."""
    sheets = {}
    for info in thread.characters:
        if info.sheet is not None:  # a name listed twice: the first entry that has a sheet
            sheets.setdefault(clean_name(info.name), info.sheet)
    wanted = dict.fromkeys([user, *(t.character for t in turns)])
    bios = {}
    for name in wanted:
        bio = render_bio(sheets.get(name), name, schema)
        if bio is not None:
            bios[name] = bio
    return bios
