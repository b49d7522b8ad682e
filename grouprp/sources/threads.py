"""Native threads: `.jsonl` (one thread per line, streamed) or `.json` (a list of threads)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from grouprp.schema import CharacterInfo, Malformed, Post, Thread


class Invalid(ValueError):
    """A structural problem in one record; the message says where inside the record."""


def read_json_lines(path: Path) -> Iterator[tuple[int, Union[Any, Malformed]]]:
    """(line number, parsed object or Malformed) for every non-blank line; streams, decodes line by line."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a byte-order mark is not part of the first record
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, Malformed(where, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column "
                                               f"{exc.start + 1}); re-save the file as UTF-8")
                continue
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                column = min(exc.pos, len(line.rstrip("\r\n"))) + 1
                yield number, Malformed(where, f"not valid JSON ({exc.msg} at column {column})")
            except (ValueError, RecursionError) as exc:  # an integer of thousands of digits; nesting too deep
                yield number, Malformed(where, f"not readable JSON ({_json_problem(exc)})")


def read_threads_jsonl(path: Path, max_post_chars: int) -> Iterator[Union[Thread, Malformed]]:
    found = False
    for number, obj in read_json_lines(path):
        found = True
        yield obj if isinstance(obj, Malformed) else parse_thread(obj, f"{path}:{number}", max_post_chars)
    if not found:
        yield Malformed(str(path), "empty file: no threads in it")


def read_threads_json(path: Path, max_post_chars: int) -> Iterator[Union[Thread, Malformed]]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        yield Malformed(str(path), f"not UTF-8 text (at byte {exc.start}); re-save the file as UTF-8")
        return
    except json.JSONDecodeError as exc:
        yield Malformed(f"{path}:{exc.lineno}", f"not valid JSON ({exc.msg} at column {exc.colno})")
        return
    except (ValueError, RecursionError) as exc:
        yield Malformed(str(path), f"not readable JSON ({_json_problem(exc)})")
        return
    if isinstance(data, dict) and "posts" in data:
        data = [data]
    if not isinstance(data, list):
        yield Malformed(str(path), "a .json threads file holds a list of threads (or one thread)")
        return
    if not data:
        yield Malformed(str(path), "empty file: no threads in it")
    for index, obj in enumerate(data):
        yield parse_thread(obj, f"{path}: thread #{index + 1}", max_post_chars)


def parse_thread(obj: Any, where: str, max_post_chars: int) -> Union[Thread, Malformed]:
    """Validate one thread object into a Thread, or describe what is wrong with it."""
    try:
        if not isinstance(obj, dict):
            raise Invalid(f"expected a JSON object (one thread), got {_kind(obj)}")
        if "id" not in obj:
            raise Invalid("missing `id`")
        if "posts" not in obj:
            raise Invalid("missing `posts` (the list of posts of the thread)")
        if not isinstance(obj["posts"], list):
            raise Invalid(f"`posts` must be a list, got {_kind(obj['posts'])}")
        characters = obj.get("characters") or []
        if not isinstance(characters, list):
            raise Invalid(f"`characters` must be a list, got {_kind(characters)}")
        return Thread(
            id=_identifier(obj["id"], "id"),
            title=_optional_text(obj.get("title"), "title"),
            user=_optional_text(obj.get("user"), "user"),
            characters=tuple(parse_character(c, f"characters[{i}]") for i, c in enumerate(characters)),
            posts=tuple(parse_post(p, f"posts[{i}]", max_post_chars) for i, p in enumerate(obj["posts"])),
            where=where,
        )
    except Invalid as exc:
        return Malformed(where, str(exc))


def parse_post(obj: Any, key: str, max_post_chars: int) -> Post:
    if not isinstance(obj, dict):
        raise Invalid(f"{key}: expected an object with `text`, got {_kind(obj)}")
    if "text" not in obj:
        raise Invalid(f"{key}: missing `text`")
    return make_post(obj.get("text"), obj.get("author"), obj.get("character"), key, max_post_chars)


def make_post(text: Any, author: Any, character: Any, key: str, max_post_chars: int) -> Post:
    """A validated Post; `key` says where it is (`posts[3]`, `row 12`) for the error message."""
    if not isinstance(text, str):
        raise Invalid(f"{key}.text: expected a string, got {_kind(text)}")
    if len(text) > max_post_chars:
        raise Invalid(f"{key}.text: {len(text):,} characters, over data.max_post_chars ({max_post_chars:,}); "
                      "usually a scraping accident: fix the post or raise data.max_post_chars")
    author = _optional_text(author, f"{key}.author")
    character = _optional_text(character, f"{key}.character")
    if not (author or character):
        raise Invalid(f"{key}: no `character` and no `author`; one of them must say who wrote the post")
    return Post(text=text, author=author or None, character=character or None)


def parse_character(obj: Any, key: str) -> CharacterInfo:
    if not isinstance(obj, dict):
        raise Invalid(f"{key}: expected an object with `name`, got {_kind(obj)}")
    if not obj.get("name"):
        raise Invalid(f"{key}: missing `name`")
    return CharacterInfo(name=_text(obj["name"], f"{key}.name"),
                         player=_optional_text(obj.get("player"), f"{key}.player"),
                         sheet=parse_sheet_source(obj.get("sheet"), f"{key}.sheet"))


def parse_sheet_source(sheet: Any, key: str) -> Union[str, dict, None]:
    """A sheet is free text or a mapping of field -> text, number, or list of those."""
    if sheet is None or isinstance(sheet, str):
        return sheet
    if not isinstance(sheet, dict):
        raise Invalid(f"{key}: expected text or a mapping of fields, got {_kind(sheet)}")
    out: dict[str, Union[str, list[str]]] = {}
    for field, value in sheet.items():
        if isinstance(value, list):
            out[field] = [_text(v, f"{key}.{field}[{i}]") for i, v in enumerate(value) if v is not None]
        elif value is not None:
            out[field] = _text(value, f"{key}.{field}")
    return out


def _json_problem(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc).split(";")[0]


def _text(value: Any, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Invalid(f"{key}: expected a string, got {_kind(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise Invalid(f"{key}: expected a string, got {value}")
    return value if isinstance(value, str) else str(value)


def _identifier(value: Any, key: str) -> str:
    """An id is used as text everywhere (dataset rows, file names in messages): it must be encodable."""
    text = _text(value, key)
    if not text.strip() or any("\ud800" <= c <= "\udfff" or c < " " for c in text):
        raise Invalid(f"{key}: {text!r} is not a usable id (empty, or with control characters or broken "
                      "surrogate escapes)")
    return text


def _optional_text(value: Any, key: str) -> Optional[str]:
    return None if value is None else _text(value, key)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"a number ({value!r})"
    return names.get(type(value), type(value).__name__)
