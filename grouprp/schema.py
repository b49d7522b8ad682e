"""The records that flow through the pipeline: what is read, what is rendered.

group mode:            files -> Thread (as read) -> Entry (cleaned, filtered, roles set) -> Example -> tokens
single-character mode: files -> Reply (a reply with its history and scenario) -----------> Example -> tokens

An Example is rendered text plus the character spans whose tokens are trained.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal, Optional, Union

SheetSource = Union[str, dict, None]
"""A character sheet as found in the input: free text, a mapping of field -> value(s), or nothing."""


class DataError(ValueError):
    """Bad input data; the message names the file and line (or row) and what is wrong."""


TAVERN_FIELDS = ("name", "description", "personality", "scenario", "first_mes", "mes_example")
"""The text fields of a Character Card (V1 to V3) that grouprp reads; data.card_sheet maps all but the name."""


@dataclass(frozen=True)
class Post:
    text: str
    author: Optional[str] = None
    character: Optional[str] = None


@dataclass(frozen=True)
class CharacterInfo:
    name: str
    player: Optional[str] = None
    sheet: SheetSource = None


@dataclass(frozen=True)
class Thread:
    """A forum thread as read from disk, before cleaning. `where` is 'file:line' for error messages."""

    id: str
    posts: tuple[Post, ...]
    title: Optional[str] = None
    user: Optional[str] = None
    characters: tuple[CharacterInfo, ...] = ()
    where: str = ""

    def to_json(self) -> str:
        # by hand rather than dataclasses.asdict, which deep-copies: this runs once per thread read. ASCII, so
        # broken surrogates from JSON escapes (which cleaning removes) survive the trip through Arrow
        return json.dumps({
            "id": self.id, "title": self.title, "user": self.user, "where": self.where,
            "posts": [[p.text, p.author, p.character] for p in self.posts],
            "characters": [[c.name, c.player, c.sheet] for c in self.characters],
        })

    @classmethod
    def from_json(cls, text: str) -> "Thread":
        raw = json.loads(text)
        return cls(id=raw["id"], title=raw["title"], user=raw["user"], where=raw["where"],
                   posts=tuple(Post(*p) for p in raw["posts"]),
                   characters=tuple(CharacterInfo(*c) for c in raw["characters"]))


@dataclass(frozen=True)
class Malformed:
    """An input record that could not be read; counted under `dropped.malformed` or raised."""

    where: str
    problem: str

    def message(self) -> str:
        return f"{self.where}: {self.problem}"


@dataclass(frozen=True)
class Reply:
    """One reply of the target character in single-character mode, with the history before it."""

    id: str
    scenario: str
    history: tuple[tuple[Optional[str], str], ...]  # (speaker or None for narration, text)
    text: str
    where: str = ""

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "scenario": self.scenario, "history": self.history, "text": self.text,
                           "where": self.where})

    @classmethod
    def from_json(cls, text: str) -> "Reply":
        raw = json.loads(text)
        return cls(raw["id"], raw["scenario"], tuple(tuple(h) for h in raw["history"]), raw["text"], raw["where"])


Role = Literal["user", "model"]


@dataclass(frozen=True)
class Turn:
    character: str
    text: str
    role: Role
    marks: tuple = ()  # quality.review.Mark: what the data-quality detectors flagged or trimmed in this post


@dataclass(frozen=True)
class RemovedPost:
    """A post left out of an entry, for the report: it stood before turn `before`, and why it went."""

    before: int
    character: str
    text: str
    reason: str


@dataclass(frozen=True)
class Entry:
    """A cleaned thread ready to render: who the user plays, each character's rendered sheet, and the turns."""

    id: str
    user: str
    turns: tuple[Turn, ...]
    bios: dict[str, str] = field(default_factory=dict)
    cast: tuple[str, ...] = ()  # chat: every character of the scene, listed before any of them has posted
    context: int = 0  # a window's leading turns borrowed from the window before it: shown, never trained
    start: int = 0  # where a window's first turn is among its thread's turns
    removed: tuple[RemovedPost, ...] = ()  # posts of the thread left out, positioned among its turns
    genres: tuple[str, ...] = ()  # the thread's genres, main one first (group mode)

    @property
    def characters(self) -> list[str]:
        """The cast when given, then the distinct posting characters, in order of first post."""
        return list(dict.fromkeys([*self.cast, *(t.character for t in self.turns)]))


@dataclass(frozen=True)
class Example:
    """Rendered text and the character spans [start, end) whose tokens are trained."""

    text: str
    trained: tuple[tuple[int, int], ...]
    append_eos: bool = False  # alichat trains the tokenizer's EOS token, which is not part of the text
    markers: tuple[tuple[int, int], ...] = ()  # the format's own markers ([INST], <|im_end|>, ...): the only
    # text allowed to become control tokens; the same strings inside data are encoded as plain text
    owners: tuple[str, ...] = ()  # whose words each trained span is (the character), for per-character figures

    def trained_text(self) -> str:
        return "".join(self.text[s:e] for s, e in self.trained)
