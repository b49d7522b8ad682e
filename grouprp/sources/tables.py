"""Posts tables (`.csv`, `.tsv`, `.parquet`, `.jsonl` rows): one post per row, grouped into threads.

Every row either becomes exactly the post it holds or is reported with its file and line. CSV is read strictly:
a row whose cells do not match the header (an unquoted comma, a missing cell) or whose quotes are broken is
malformed, and reading goes on at the next line, so a stray quote never swallows the rows after it. TSV is read
as the unquoted format it usually is (quotes are text), unless `data.tsv_quoted`.

Streaming in two passes over all table files together, so a large, unsorted scrape never sits in memory whole
and a thread split over several files is one thread: the first pass counts the rows of each thread; the second
collects each thread's rows and hands the thread on as soon as its last row has been seen.
"""

from __future__ import annotations

import csv
import math
import sys
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

from grouprp.schema import CharacterInfo, DataError, Malformed, Post, Thread
from grouprp.sources.threads import (Invalid, _identifier, _kind, _optional_text, make_post, parse_sheet_source,
                                     read_json_lines)

Row = dict[str, Any]
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
_PARQUET_BATCH_ROWS = 8192


class _Unreadable(Exception):
    """A whole file cannot be read (a corrupt or truncated Parquet file)."""


def read_posts_tables(paths: Sequence[Path], columns: dict[str, str], sheets: "SheetIndex", max_post_chars: int,
                      tsv_quoted: bool = False) -> Iterator[Union[Thread, Malformed]]:
    """Threads from posts tables; `columns` maps our names (thread_id, text, ...) to the files' columns."""
    tables = []
    for path in paths:
        problem = _check_header(path, columns)
        if problem:
            yield problem
        else:
            tables.append(_Table(path, columns, max_post_chars, tsv_quoted))
    id_column = columns["thread_id"]
    remaining: Counter = Counter()
    readable = []
    for table in tables:
        counts: Counter = Counter()
        rows_seen = 0
        try:
            for _, row, _ in table.rows():
                rows_seen += 1
                thread_id = None if row is None else _thread_id(row, id_column)
                if thread_id is not None:
                    counts[thread_id] += 1
        except _Unreadable as exc:
            yield Malformed(str(table.path), str(exc))
            continue
        if rows_seen == 0:
            yield Malformed(str(table.path), "empty file: no posts in it")
            continue
        remaining.update(counts)
        readable.append(table)

    open_threads: dict[str, list[tuple[str, Row]]] = defaultdict(list)
    problems: dict[str, Malformed] = {}  # a thread with one bad row is malformed as a whole
    for table in readable:
        for where, row, problem in table.rows():
            thread_id = None if row is None else _thread_id(row, id_column)
            if thread_id is None or thread_id not in remaining:
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
                yield problems.pop(thread_id, None) or _thread(thread_id, rows, columns, sheets, max_post_chars)


def _thread(thread_id: str, rows: list[tuple[str, Row]], columns: dict[str, str], sheets: "SheetIndex",
            max_post_chars: int) -> Union[Thread, Malformed]:
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
    try:
        _identifier(thread_id, f"column {columns['thread_id']!r}")
    except Invalid as exc:
        return Malformed(rows[0][0], str(exc))
    title = next((row.get(columns["title"]) for _, row in rows if row.get(columns["title"])), None)
    first = rows[0][0].rsplit(":", 1)[0] if rows else ""
    return Thread(id=thread_id, posts=tuple(posts), title=title if isinstance(title, str) else None,
                  characters=sheets.for_thread(thread_id, posts), where=f"{first} (thread {thread_id})")


class _Table:
    """One table file: its rows as (where, row or None, problem or None)."""

    def __init__(self, path: Path, columns: dict[str, str], max_post_chars: int, tsv_quoted: bool) -> None:
        self.path, self.columns, self.max_post_chars, self.tsv_quoted = path, columns, max_post_chars, tsv_quoted

    def rows(self) -> Iterator[tuple[str, Optional[Row], Optional[str]]]:
        suffix = self.path.suffix.lower()
        if suffix == ".parquet":
            yield from _parquet_rows(self.path)
        elif suffix in (".csv", ".tsv"):
            quoted = suffix == ".csv" or self.tsv_quoted
            yield from delimited_rows(self.path, "\t" if suffix == ".tsv" else ",", quoted, self.max_post_chars,
                                      self.columns["thread_id"])
        else:
            text_column = self.columns["text"]
            for number, obj in read_json_lines(self.path):
                where = f"{self.path}:{number}"
                if isinstance(obj, Malformed):
                    yield where, None, obj.problem
                elif not isinstance(obj, dict):
                    yield where, None, f"expected a JSON object (one row), got {_kind(obj)}"
                elif text_column not in obj:
                    yield where, obj, f"no {text_column!r} in this row (data.columns.text)"
                else:
                    yield where, obj, None


def _check_header(path: Path, columns: dict[str, str]) -> Optional[Malformed]:
    try:
        names = _header(path)
    except _Unreadable as exc:
        return Malformed(str(path), str(exc))
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

        with _parquet_errors(path):
            return list(pq.ParquetFile(path).schema_arrow.names)
    if suffix in (".csv", ".tsv"):
        # utf-8-sig: a byte-order mark before the first column name is not part of the name
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
            first = next(csv.reader(handle, delimiter="\t" if suffix == ".tsv" else ","), None)
        return first or []
    return None


class _Lines:
    """The physical lines of a text file with their numbers; lines handed out can be pushed back and read again."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.number = 0
        self.back: list[tuple[str, int]] = []
        self.taken: list[tuple[str, int]] = []

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        if self.back:
            line, number = self.back.pop()
        else:
            line = self.handle.readline()
            if not line:
                raise StopIteration
            self.number += 1
            number = self.number
        self.taken.append((line, number))
        return line

    def push_back(self, lines: list[tuple[str, int]]) -> None:
        self.back.extend(reversed(lines))


def delimited_rows(path: Path, delimiter: str, quoted: bool, max_cell_chars: int,
                   id_column: str = "") -> Iterator[tuple[str, Optional[Row], Optional[str]]]:
    """(where, row, problem) for every record of a CSV or TSV file, checked against the header.

    A record whose cells do not match the header, or whose quoting is broken, is a problem at its first line;
    reading then goes on at the line after it, so the rows a broken quote ran into are read as rows. A cell over
    `max_cell_chars` is a problem too, and its whole record is skipped.
    """
    dialect = {"delimiter": delimiter, "strict": True,
               "quoting": csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE}
    name = "comma" if delimiter == "," else "tab"
    # surrogateescape keeps going past bad bytes so the problem can be reported with its row
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as handle, \
            _field_limit(max_cell_chars):
        lines = _Lines(handle)
        header: Optional[list[str]] = None
        reader = csv.reader(lines, **dialect)
        while True:
            lines.taken = []
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                taken, lines.taken = lines.taken, []
                first_line, first_number = taken[0] if taken else ("", lines.number)
                where = f"{path}:{first_number}"
                if "field larger than field limit" in str(exc):
                    lines.push_back(taken)  # read the whole record once more, only to step over it
                    with _field_limit(sys.maxsize):
                        cells = next(csv.reader(lines, **dialect), [])
                    row = dict(zip(header or [], cells))
                    yield where, row, (f"a cell over data.max_post_chars ({max_cell_chars:,} characters); usually "
                                       "a scraping accident: fix the row or raise data.max_post_chars")
                else:
                    lines.push_back(taken[1:])  # go on at the next line: it was probably a row of its own
                    partial = next(csv.reader([first_line], delimiter=delimiter), [])
                    row = dict(zip(header or [], partial)) if id_column else None
                    yield where, row, (f"broken quoting ({exc}); a {name} row's text with a stray or unclosed "
                                       "double quote must be quoted as a whole, with inner quotes doubled")
                reader = csv.reader(lines, **dialect)
                continue
            where = f"{path}:{lines.taken[0][1]}" if lines.taken else f"{path}:{lines.number}"
            if not cells:  # a blank line
                continue
            if header is None:
                header = cells
                continue
            row = dict(zip(header, cells))
            if len(cells) != len(header):
                yield where, row, (f"{len(cells)} cells where the header has {len(header)}; a {name} inside a "
                                   f"cell's text needs quoting{' (or data.tsv_quoted: true)' if not quoted else ''}, "
                                   "and every row needs every cell")
                continue
            bad = next((k for k, v in row.items() if _has_surrogates(v)), None)
            yield where, row, None if bad is None else f"column {bad!r} is not UTF-8 text; re-save the file as UTF-8"


@contextmanager
def _field_limit(chars: int):
    """The csv module's cell size limit (process-wide) for the duration of one read."""
    previous = csv.field_size_limit(max(chars, 1))
    try:
        yield
    finally:
        csv.field_size_limit(previous)


@contextmanager
def _parquet_errors(path: Path):
    import pyarrow as pa

    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        raise _Unreadable(f"not a readable Parquet file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                          "; it may be truncated or corrupt: re-export it") from None


def _parquet_rows(path: Path) -> Iterator[tuple[str, Row, None]]:
    import pyarrow.parquet as pq

    index = 0
    with _parquet_errors(path):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=_PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                index += 1
                yield f"{path}: row {index}", row, None


def _thread_id(row: Row, column: str) -> Optional[str]:
    value = row.get(column)
    if value is None or value == "" or _is_nan(value):
        return None
    return str(value)


def _number(value: Any) -> Optional[Union[int, float]]:
    """A position as a number to sort by (ints exactly, however large), or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        return int(text)
    except ValueError:  # not an integer, or one with more digits than Python converts
        pass
    try:
        number = float(text)
    except ValueError:
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
    """Character sheets of posts tables: rows {thread_id?, name, player?, sheet}, by thread and for all threads.

    Remembers which rows were given to a thread where their character (or player) posts, so that the rows never
    used can be counted and named."""

    def __init__(self, by_thread: dict[str, list[tuple[str, CharacterInfo]]],
                 everywhere: list[tuple[str, CharacterInfo]]):
        self.by_thread = by_thread
        self.everywhere = everywhere
        self.used: set[str] = set()

    @classmethod
    def empty(cls) -> "SheetIndex":
        return cls({}, [])

    @classmethod
    def load(cls, path: Path) -> "SheetIndex":
        """Read a sheets file (`.jsonl`, `.json` list, `.csv`/`.tsv`/`.parquet`); any bad row is an error."""
        if not path.exists():
            raise DataError(f"data.sheets: {path} not found")
        by_thread: dict[str, list[tuple[str, CharacterInfo]]] = defaultdict(list)
        everywhere: list[tuple[str, CharacterInfo]] = []
        try:
            for where, row, problem in _sheet_rows(path):
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
                (by_thread[str(thread_id)] if thread_id is not None else everywhere).append((where, info))
        except _Unreadable as exc:
            raise DataError(f"{path}: {exc} (sheets file)") from None
        return cls(dict(by_thread), everywhere)

    def for_thread(self, thread_id: str, posts: list[Post]) -> tuple[CharacterInfo, ...]:
        """This thread's own sheets, then the thread-less sheets of characters (or players) who post in it."""
        posting = {p.character for p in posts} | {p.author for p in posts}
        own = []
        for where, info in self.by_thread.get(thread_id, []):
            own.append(info)
            if info.name in posting or (info.player and info.player in posting):
                self.used.add(where)
        names = {c.name for c in own}
        players = {c.player for c in own if c.player}
        for where, info in self.everywhere:
            if info.name in names or (info.player and info.player in players):
                continue
            if info.name in posting or (info.player and info.player in posting):
                own.append(info)
                self.used.add(where)
        return tuple(own)

    def unused(self) -> list[str]:
        """Where each row is that no thread used (no such thread, or its character never posts there)."""
        rows = [where for rows in self.by_thread.values() for where, _ in rows] + [w for w, _ in self.everywhere]
        return [where for where in rows if where not in self.used]


def _sheet_rows(path: Path) -> Iterator[tuple[str, Optional[Row], Optional[str]]]:
    suffix = path.suffix.lower()
    if suffix == ".json":
        yield from _json_list_rows(path)
    elif suffix in (".csv", ".tsv"):
        yield from delimited_rows(path, "\t" if suffix == ".tsv" else ",", True, sys.maxsize)
    elif suffix == ".parquet":
        yield from _parquet_rows(path)
    else:
        for number, obj in read_json_lines(path):
            where = f"{path}:{number}"
            if isinstance(obj, Malformed):
                yield where, None, obj.problem
            elif not isinstance(obj, dict):
                yield where, None, f"expected a JSON object (one row), got {_kind(obj)}"
            else:
                yield where, obj, None


def _json_list_rows(path: Path) -> Iterator[tuple[str, Optional[Row], Optional[str]]]:
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
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
