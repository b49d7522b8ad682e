"""Input readers: the only code that opens data files. Each yields Thread records or Malformed ones, streaming."""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections import Counter
from pathlib import Path
from typing import Iterator, Optional, Union

from grouprp.config import DataConfig
from grouprp.schema import CharacterInfo, DataError, Malformed, Thread
from grouprp.sources.cards import TavernCard, card_files, read_tavern_card
from grouprp.sources.sillytavern import looks_like_sillytavern, read_sillytavern
from grouprp.sources.tables import TABLE_SUFFIXES, SheetIndex, read_posts_tables
from grouprp.sources.threads import read_json_lines, read_threads_json, read_threads_jsonl

log = logging.getLogger("grouprp")

DATA_SUFFIXES = (".jsonl", ".json", *TABLE_SUFFIXES)
SCRIPT_SUFFIXES = (".txt", ".jsonl")


def thread_suffixes(cfg: DataConfig) -> tuple[str, ...]:
    """The files a folder of threads is read from: SillyTavern chats are .jsonl only."""
    return (".jsonl",) if cfg.format == "sillytavern" else DATA_SUFFIXES


def input_files(cfg: DataConfig, suffixes: tuple[str, ...] = DATA_SUFFIXES) -> list[Path]:
    """The data files behind `data.path`: the file itself, or every file below the folder with one of `suffixes`,
    sorted (hidden paths and the sheets and card files left out)."""
    path = Path(cfg.path)
    if not path.exists():
        raise DataError(f"data.path: {path} does not exist")
    if path.is_file():
        return [path]
    skip = {Path(p).resolve() for p in (cfg.sheets, cfg.card) if p}
    cards = Path(cfg.cards).resolve() if cfg.cards else None
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
                   and not any(part.startswith(".") for part in p.relative_to(path).parts)
                   and p.resolve() not in skip and not (cards and p.resolve().is_relative_to(cards)))
    if not files:
        raise DataError(f"data.path: no data files ({', '.join(suffixes)}) in the folder {path}")
    return files


def read_threads(cfg: DataConfig, left_out: Optional[Counter] = None) -> Iterator[Union[Thread, Malformed]]:
    """Every thread of every input file: native thread files in file order, then the threads of all posts tables
    together (one thread may be spread over several table files). A thread id seen before is malformed input.

    `left_out` counts input deliberately not used: sheet rows that no thread used (`sheet_rows_unused`).
    """
    sheets = SheetIndex.load(Path(cfg.sheets)) if cfg.sheets else SheetIndex.empty()
    left_out = Counter() if left_out is None else left_out
    cards, bad_cards = load_cards(Path(cfg.cards)) if cfg.cards else ({}, [])
    yield from bad_cards
    files = input_files(cfg, thread_suffixes(cfg))
    kinds = {path: file_format(path, cfg.format) for path in files}
    for path, kind in kinds.items():
        if kind not in ("threads", "posts", "sillytavern"):
            raise DataError(f"{path}: data.format {kind} is read by the single-character pipeline, not as threads")
    root = Path(cfg.path)

    def by_file(path: Path, kind: str):
        if kind == "sillytavern":
            return read_sillytavern(path, root, cfg.max_post_chars, left_out)
        if path.suffix.lower() == ".json":
            return read_threads_json(path, cfg.max_post_chars)
        return read_threads_jsonl(path, cfg.max_post_chars)

    native = (by_file(p, kind) for p, kind in kinds.items() if kind != "posts")
    tables = [p for p, kind in kinds.items() if kind == "posts"]
    records = itertools.chain(itertools.chain.from_iterable(native),
                              read_posts_tables(tables, cfg.columns, sheets, cfg.max_post_chars, cfg.tsv_quoted)
                              if tables else ())
    seen: dict[str, str] = {}
    used_cards: set[str] = set()
    for record in records:
        if isinstance(record, Thread):
            if record.id in seen:
                yield Malformed(record.where, f"thread id {record.id!r} again (first at {seen[record.id]}); each "
                                              "thread needs its own id: remove the copy or rename one")
                continue
            seen[record.id] = record.where
            if cards:
                record = with_card_sheets(record, cards, cfg.card_sheet, used_cards)
        yield record
    unused_cards = sorted(set(cards) - used_cards)
    if unused_cards:
        left_out["cards_unused"] += len(unused_cards)
        log.warning("%d card(s) in %s named no character of any thread and were not used: %s%s", len(unused_cards),
                    cfg.cards, ", ".join(cards[k].name for k in unused_cards[:5]), ", ..." if len(unused_cards) > 5
                    else "")
    unused = sheets.unused()
    if unused:
        left_out["sheet_rows_unused"] += len(unused)
        log.warning("%d sheet row(s) matched no posting character of their thread and were not used: %s%s",
                    len(unused), ", ".join(unused[:5]), ", ..." if len(unused) > 5 else "")


def file_format(path: Path, configured: Union[str, None]) -> str:
    """`data.format` when set; else .json is threads, tables are posts, and a .jsonl file is told by its first
    record that parses (a broken first line is reported as such, never a reason to read the file another way)."""
    if configured:
        return configured
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "threads"
    if suffix in TABLE_SUFFIXES:
        return "posts"
    for _, first in itertools.islice(read_json_lines(path), 100):
        if isinstance(first, Malformed):
            continue
        if looks_like_sillytavern(first):
            return "sillytavern"
        return "posts" if isinstance(first, dict) and "posts" not in first and "text" in first else "threads"
    return "threads"


def load_cards(folder: Path) -> tuple[dict[str, TavernCard], list[Malformed]]:
    """The Character Cards of a folder by casefolded name (the first of two with one name is used), and the
    files that are not readable cards, as Malformed input."""
    cards: dict[str, TavernCard] = {}
    bad = []
    for path in card_files(folder):
        try:
            card = read_tavern_card(path)
        except DataError as exc:
            bad.append(Malformed(str(path), str(exc).removeprefix(f"{path}: ")))
            continue
        key = card.name.casefold()
        if key in cards:
            log.warning("%s: a second card for %s (the first, %s, is used)", path, card.name, cards[key].path)
            continue
        cards[key] = card
    return cards, bad


def with_card_sheets(thread: Thread, cards: dict[str, TavernCard], fields: dict[str, str],
                     used: set[str]) -> Thread:
    """The thread with a sheet from its card for every posting character that has a card and no sheet yet."""
    has_sheet = {c.name.casefold() for c in thread.characters if c.sheet is not None}
    names = dict.fromkeys(p.character or p.author for p in thread.posts)
    if thread.user:
        names.setdefault(thread.user)
    added = []
    for name in names:
        key = name.casefold()
        if key in cards and key not in has_sheet:
            added.append(CharacterInfo(name=name, sheet=cards[key].sheet(thread.user, fields)))
            used.add(key)
    if not added:
        return thread
    return dataclasses.replace(thread, characters=thread.characters + tuple(added))
