"""What a mode is: a reader of records and a builder of examples from them.

`prepare`, `preview` and `stats` run only this interface, so both modes share one pipeline: `read()` yields the
records of the input (or Malformed ones), and `build(records, encoder)` turns each record into its examples, or
into the reason it has none. Without an encoder (preview without a tokenizer) nothing is measured in tokens, so
nothing is windowed or trimmed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

from grouprp.config import Config
from grouprp.filters import Accounting
from grouprp.schema import Example, Malformed
from grouprp.sources import input_files
from grouprp.sources.cards import card_files
from grouprp.tokenize import Encoder, Tokenized


@dataclass(frozen=True)
class ExampleRow:
    """One example as it goes into the dataset: id, rendered text, tokens (None without an encoder), sizes."""

    id: str
    example: Optional[Example]
    tokens: Optional[Tokenized]
    turns: int
    characters: int
    user: str = ""  # who the human plays in it (the user's character, or the single-character user label)
    entry: Any = None  # group mode: the Entry (or window) it was rendered from, with what quality marked in it


@dataclass
class Outcome:
    """What one record became: its examples, or the reason it has none; posts and windows removed on the way."""

    rows: list[ExampleRow]
    drop: Optional[str] = None
    posts_removed: Counter = field(default_factory=Counter)
    posts_changed: Counter = field(default_factory=Counter)
    windows_dropped: Counter = field(default_factory=Counter)
    findings: Any = None  # quality.review.Findings: what the data-quality detectors found (group mode)
    sketch: Any = None  # quality.duplicates.ThreadSketch: what the record is compared by for repeats
    key: str = ""  # the record's id, for the repeats and the genre cap decided after all records are built
    genres: tuple[str, ...] = ()  # the record's genres, main one first


class Mode(ABC):
    """Records in, examples out. Subclasses say what a record is and how it becomes examples."""

    unit = "records"  # what a record is called in progress messages
    record_type: Any = None  # the record class, with to_json/from_json
    file_suffixes: tuple[str, ...] = ()  # the files read from a data folder
    without_tokenizer = ""  # what preview says when it has no tokenizer to measure examples with
    quality = None  # quality.review.Quality: the data-quality detectors, where the mode has them

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.data = cfg.data

    @abstractmethod
    def describe(self) -> str:
        """What the model learns from, in a few words (for the model card)."""

    @abstractmethod
    def sample_prompt(self) -> str:
        """A short conversation in this mode's format, up to where the model writes (for the model card)."""

    @abstractmethod
    def read(self, accounting: Accounting) -> Iterator[Union[Any, Malformed]]:
        """Every record of the input, in input order; Malformed for input that cannot be read. What is read but
        deliberately not used (an unused sheet row, an empty script line) is counted in `accounting`."""

    @abstractmethod
    def build(self, records: Sequence[Any], encoder: Optional[Encoder]) -> list[Outcome]:
        """One Outcome per record, in order."""

    def input_files(self) -> list[Path]:
        """Every file whose bytes decide the examples (for the dataset cache's fingerprint)."""
        extra = [Path(p) for p in (self.data.sheets, self.data.card, self.data.quality.genres) if p]
        if self.data.cards:
            extra += card_files(self.data.cards)
        return input_files(self.data, self.file_suffixes) + extra
