"""Input readers: the only code that opens data files. Each yields Thread records or Malformed ones, streaming."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Union

from grouprp.config import DataConfig
from grouprp.schema import DataError, Malformed, Thread
from grouprp.sources.tables import TABLE_SUFFIXES, SheetIndex, read_posts_table
from grouprp.sources.threads import read_threads_json, read_threads_jsonl

DATA_SUFFIXES = (".jsonl", ".json", *TABLE_SUFFIXES)
SCRIPT_SUFFIXES = (".txt", ".jsonl")


def input_files(cfg: DataConfig, suffixes: tuple[str, ...] = DATA_SUFFIXES) -> list[Path]:
    """The data files behind `data.path`: the file itself, or every file below the folder with one of `suffixes`,
    sorted (hidden paths and the sheets and card files left out)."""
    path = Path(cfg.path)
    if not path.exists():
        raise DataError(f"data.path: {path} does not exist")
    if path.is_file():
        return [path]
    skip = {Path(p).resolve() for p in (cfg.sheets, cfg.card) if p}
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
                   and not any(part.startswith(".") for part in p.relative_to(path).parts)
                   and p.resolve() not in skip)
    if not files:
        raise DataError(f"data.path: no data files ({', '.join(suffixes)}) in the folder {path}")
    return files


def read_threads(cfg: DataConfig) -> Iterator[Union[Thread, Malformed]]:
    """Every thread of every input file, in file order."""
    sheets = SheetIndex.load(Path(cfg.sheets)) if cfg.sheets else SheetIndex.empty()
    for path in input_files(cfg):
        kind = file_format(path, cfg.format)
        if kind == "threads":
            reader = read_threads_json if path.suffix.lower() == ".json" else read_threads_jsonl
            yield from reader(path, cfg.max_post_chars)
        elif kind == "posts":
            yield from read_posts_table(path, cfg.columns, sheets, cfg.max_post_chars)
        else:
            raise DataError(f"{path}: data.format {kind} is read by the single-character pipeline, not as threads")


def file_format(path: Path, configured: Union[str, None]) -> str:
    """`data.format` when set; else .json is threads, tables are posts, and .jsonl is told by its first record."""
    if configured:
        return configured
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "threads"
    if suffix in TABLE_SUFFIXES:
        return "posts"
    with open(path, "rb") as handle:
        for raw in handle:
            if raw.strip():
                try:
                    first = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    return "threads"  # the reader reports the broken line with its number
                return "posts" if isinstance(first, dict) and "posts" not in first and "text" in first else "threads"
    return "threads"
