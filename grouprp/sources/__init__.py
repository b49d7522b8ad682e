"""Input readers: the only code that opens data files. Each yields Thread records or Malformed ones, streaming."""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from pathlib import Path
from typing import Iterator, Optional, Union

from grouprp.config import DataConfig
from grouprp.schema import DataError, Malformed, Thread
from grouprp.sources.tables import TABLE_SUFFIXES, SheetIndex, read_posts_tables
from grouprp.sources.threads import read_json_lines, read_threads_json, read_threads_jsonl

log = logging.getLogger("grouprp")

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


def read_threads(cfg: DataConfig, left_out: Optional[Counter] = None) -> Iterator[Union[Thread, Malformed]]:
    """Every thread of every input file: native thread files in file order, then the threads of all posts tables
    together (one thread may be spread over several table files). A thread id seen before is malformed input.

    `left_out` counts input deliberately not used: sheet rows that no thread used (`sheet_rows_unused`).
    """
    sheets = SheetIndex.load(Path(cfg.sheets)) if cfg.sheets else SheetIndex.empty()
    files = input_files(cfg, DATA_SUFFIXES)
    kinds = {path: file_format(path, cfg.format) for path in files}
    for path, kind in kinds.items():
        if kind not in ("threads", "posts"):
            raise DataError(f"{path}: data.format {kind} is read by the single-character pipeline, not as threads")
    native = (read_threads_json(p, cfg.max_post_chars) if p.suffix.lower() == ".json"
              else read_threads_jsonl(p, cfg.max_post_chars) for p, kind in kinds.items() if kind == "threads")
    tables = [p for p, kind in kinds.items() if kind == "posts"]
    records = itertools.chain(itertools.chain.from_iterable(native),
                              read_posts_tables(tables, cfg.columns, sheets, cfg.max_post_chars, cfg.tsv_quoted)
                              if tables else ())
    seen: dict[str, str] = {}
    for record in records:
        if isinstance(record, Thread):
            if record.id in seen:
                yield Malformed(record.where, f"thread id {record.id!r} again (first at {seen[record.id]}); each "
                                              "thread needs its own id: remove the copy or rename one")
                continue
            seen[record.id] = record.where
        yield record
    unused = sheets.unused()
    if unused:
        if left_out is not None:
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
        return "posts" if isinstance(first, dict) and "posts" not in first and "text" in first else "threads"
    return "threads"
