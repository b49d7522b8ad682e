"""Posts tables (`.csv`, `.tsv`, `.parquet`, `.jsonl` rows): one post per row, grouped into threads.

Streaming in two passes so a large, unsorted scrape never sits in memory whole: the first pass reads only the
thread ids and counts rows per thread; the second collects each thread's rows and hands the thread on as soon as
its last row has been seen. Memory holds only the threads still open at one time.
"""

from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from grouprp.schema import CharacterInfo, DataError, Malformed, Post, Thread
from grouprp.sources.threads import Invalid, _kind, _optional_text, make_post, parse_sheet_source, read_json_lines

Row = dict[str, Any]
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
_PARQUET_BATCH_ROWS = 8192


def read_posts_table(path: Path, columns: dict[str, str], sheets: "SheetIndex",
                     max_post_chars: int) -> Iterator[Union[Thread, Malformed]]:
    """Threads from a posts table; `columns` maps our names (thread_id, text, ...) to the file's columns."""
    header_problem = _check_header(path, columns)
    if header_problem:
        yield header_problem
        return
    id_column = columns["thread_id"]
    remaining: Counter = Counter()
    rows_seen = 0
    for _, row, _ in _rows(path):
        rows_seen += 1
        if row is not None and _thread_id(row, id_column) is not None:
            remaining[_thread_id(row, id_column)] += 1
    if rows_seen == 0:
        yield Malformed(str(path), "empty file: no posts in it")
        return

    open_threads: dict[str, list[tuple[str, Row]]] = defaultdict(list)
    problems: dict[str, Malformed] = {}  # a thread with one bad row is malformed as a whole
    for where, row, problem in _rows(path):
        thread_id = None if row is None else _thread_id(row, id_column)
        if thread_id is None:
            yield Malformed(where, problem or f"no thread id (column {id_column!r} is empty)")
            continue
        if problem and thread_id not in problems:
            problems[thread_id] = Malformed(where, problem)
            open_threads.pop(thread_id, None)
        elif thread_id not in problems:
            open_threads[thread_id].append((where, row))
        remaining[thread_id] -= 1
        if remaining[thread_id] == 0:
            del remaining[thread_id]
            rows = open_threads.pop(thread_id, [])
            yield problems.pop(thread_id, None) or _thread(thread_id, rows, columns, sheets, max_post_chars, path)


def _thread(thread_id: str, rows: list[tuple[str, Row]], columns: dict[str, str], sheets: "SheetIndex",
            max_post_chars: int, path: Path) -> Union[Thread, Malformed]:
    position = columns["position"]
    keys = [row.get(position) for _, row in rows]
    if all(k is not None and k != "" for k in keys):
        numbers = [_number(k) for k in keys]
        order = numbers if all(n is not None for n in numbers) else [str(k) for k in keys]
        rows = [r for _, r in sorted(zip(order, rows), key=lambda pair: pair[0])]
    posts = []
    for where, row in rows:
        text = row.get(columns["text"])
        try:
            posts.append(make_post("" if text is None or _is_nan(text) else text, row.get(columns["author"]),
                                   row.get(columns["character"]), "post", max_post_chars))
        except Invalid as exc:
            return Malformed(where, str(exc))
    title = next((row.get(columns["title"]) for _, row in rows if row.get(columns["title"])), None)
    return Thread(id=thread_id, posts=tuple(posts), title=title if isinstance(title, str) else None,
                  characters=sheets.for_thread(thread_id, posts), where=f"{path} (thread {thread_id})")


def _check_header(path: Path, columns: dict[str, str]) -> Optional[Malformed]:
    names = _header(path)
    if names is None:
        return None
    for role in ("thread_id", "text"):
        if columns[role] not in names:
            return Malformed(f"{path}:1", f"no {columns[role]!r} column (data.columns.{role}); the header has "
                                          f"{', '.join(map(repr, names))}. Set data.columns.{role} to the column "
                                          f"that holds the {role.replace('_', ' ')}")
    return None


def _header(path: Path) -> Optional[list[str]]:
    """Column names of a CSV/TSV/Parquet file (None for JSON rows, whose keys vary by row)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    if suffix in (".csv", ".tsv"):
        with open(path, encoding="utf-8", errors="replace", newline="") as handle:
            first = next(csv.reader(handle, delimiter="\t" if suffix == ".tsv" else ","), None)
        return first or []
    return None


def _rows(path: Path) -> Iterator[tuple[str, Optional[Row], Optional[str]]]:
    """(where, row, problem) for every row; row is None when nothing could be read, problem None when fine."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet_rows(path)
    elif suffix in (".csv", ".tsv"):
        yield from _csv_rows(path, "\t" if suffix == ".tsv" else ",")
    else:
        for number, obj in read_json_lines(path):
            where = f"{path}:{number}"
            if isinstance(obj, Malformed):
                yield where, None, obj.problem
            elif not isinstance(obj, dict):
                yield where, None, f"expected a JSON object (one row), got {_kind(obj)}"
            else:
                yield where, obj, None


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[str, Row, Optional[str]]]:
    # surrogateescape keeps going past bad bytes so the problem can be reported with its row
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        line = 1
        for row in reader:
            where = f"{path}:{line + 1}"
            line = reader.line_num
            bad = next((k for k, v in row.items() if isinstance(v, str) and _has_surrogates(v)), None)
            yield where, row, None if bad is None else f"column {bad!r} is not UTF-8 text; re-save the file as UTF-8"


def _parquet_rows(path: Path) -> Iterator[tuple[str, Row, None]]:
    import pyarrow.parquet as pq

    index = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=_PARQUET_BATCH_ROWS):
        for row in batch.to_pylist():
            index += 1
            yield f"{path}: row {index}", row, None


def _thread_id(row: Row, column: str) -> Optional[str]:
    value = row.get(column)
    if value is None or value == "" or _is_nan(value):
        return None
    return str(value)


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _has_surrogates(text: str) -> bool:
    """True when surrogateescape kept undecodable bytes; encoding checks at C speed, not char by char."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class SheetIndex:
    """Character sheets of a posts table: rows {thread_id?, name, player?, sheet}, by thread and for all threads."""

    def __init__(self, by_thread: dict[str, list[CharacterInfo]], everywhere: list[CharacterInfo]):
        self.by_thread = by_thread
        self.everywhere = everywhere

    @classmethod
    def empty(cls) -> "SheetIndex":
        return cls({}, [])

    @classmethod
    def load(cls, path: Path) -> "SheetIndex":
        """Read a sheets file (`.jsonl`, `.json` list, `.csv`/`.tsv`/`.parquet`); any bad row is an error."""
        if not path.exists():
            raise DataError(f"{path}: sheets file not found (data.sheets)")
        by_thread: dict[str, list[CharacterInfo]] = defaultdict(list)
        everywhere: list[CharacterInfo] = []
        rows = _rows(path) if path.suffix.lower() != ".json" else _json_list_rows(path)
        for where, row, problem in rows:
            if problem:
                raise DataError(f"{where}: {problem} (sheets file)")
            try:
                if not row.get("name"):
                    raise Invalid("missing `name`")
                info = CharacterInfo(name=str(row["name"]),
                                     player=_optional_text(_none_if_blank(row.get("player")), "player"),
                                     sheet=parse_sheet_source(_none_if_blank(row.get("sheet")), "sheet"))
            except Invalid as exc:
                raise DataError(f"{where}: {exc} (sheets file)") from None
            thread_id = _none_if_blank(row.get("thread_id"))
            (by_thread[str(thread_id)] if thread_id is not None else everywhere).append(info)
        return cls(dict(by_thread), everywhere)

    def for_thread(self, thread_id: str, posts: list[Post]) -> tuple[CharacterInfo, ...]:
        """This thread's own sheets, then the thread-less sheets of characters (or players) who post in it."""
        own = list(self.by_thread.get(thread_id, []))
        names = {c.name for c in own}
        players = {c.player for c in own if c.player}
        posting = {p.character for p in posts} | {p.author for p in posts}
        for info in self.everywhere:
            if info.name in names or (info.player and info.player in players):
                continue
            if info.name in posting or (info.player and info.player in posting):
                own.append(info)
        return tuple(own)


def _json_list_rows(path: Path) -> Iterator[tuple[str, Optional[Row], Optional[str]]]:
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        yield str(path), None, f"not a valid UTF-8 JSON file ({exc})"
        return
    if not isinstance(data, list):
        yield str(path), None, "a .json sheets file holds a list of rows"
        return
    for index, row in enumerate(data):
        ok = isinstance(row, dict)
        yield f"{path}: row #{index + 1}", row if ok else None, None if ok else f"expected an object, got {_kind(row)}"


def _none_if_blank(value: Any) -> Any:
    return None if value is None or value == "" or _is_nan(value) else value
