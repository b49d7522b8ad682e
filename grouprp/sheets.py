"""Character sheets: free forum text or a mapping -> fields of the configured schema -> rendered bio text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Union

from grouprp.clean import clean_text, normalize_newlines
from grouprp.config import SheetField
from grouprp.schema import SheetSource

FieldValue = Union[str, list[str]]

_LIST_MARKER = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")
_BOLD_KEY = re.compile(r"\s*(?:\*\*(?P<a>[^*\n]+?)\*\*|\[b\](?P<b>.+?)\[/b\]|<(?P<tag>b|strong)>(?P<c>.+?)</(?P=tag)>)"
                       r"(?P<rest>.*)$", re.I)
_AFTER_BOLD_KEY = re.compile(r"\s*:\s*(?P<v>.*)$|\s+-(?:\s+(?P<w>.*))?$")
_PLAIN_KEY = re.compile(r"\s*(?P<key>[^:\n]+?)(?::\s*(?P<v>.*)|\s+-(?:\s+(?P<w>.*))?)$")
_ABSENT = {"", "n/a", "-"}


@dataclass(frozen=True)
class _KeyLine:
    key: str
    value: str
    bold: bool


class SheetSchema:
    """Field lookup by name or alias (case-insensitive), in render order."""

    def __init__(self, fields: list[SheetField]):
        self.fields = fields
        self.by_key = {}
        for f in fields:
            for key in [f.name, *f.aliases]:
                self.by_key[key.strip().lower()] = f
        self.other = self.by_key["other information"]
        text_fields = [f for f in fields if f.kind == "text"]
        self.preamble = text_fields[0] if text_fields else self.other

    def lookup(self, key: str) -> Optional[SheetField]:
        return self.by_key.get(" ".join(key.split()).lower())


def render_bio(source: SheetSource, character: str, schema: SheetSchema) -> Optional[str]:
    """The rendered `Character Bio:` text of a character, or None when it has no sheet."""
    if source is None:
        return None
    values = parse_sheet(source, character, schema)
    return render_fields(values, schema)


def parse_sheet(source: Union[str, dict], character: str, schema: SheetSchema) -> dict[str, FieldValue]:
    """Normalize a sheet to {field name: value}, scalars and text as str, lists as list[str], absent fields left out."""
    values: dict[str, FieldValue] = {}
    if isinstance(source, dict):
        for key, raw in source.items():
            if isinstance(raw, list):
                lines = [_as_text(v) for v in raw]
            else:
                lines = normalize_newlines(_as_text(raw)).split("\n")
            _store(values, schema, str(key), lines, from_mapping_list=isinstance(raw, list))
    else:
        preamble, *sections = _sections(source, schema)
        for key, lines in sections:
            _store(values, schema, key, lines)
        _store_preamble(values, schema, preamble[1])
    values.setdefault("Character Name", character)
    return {f.name: values[f.name] for f in schema.fields if f.name in values}


def render_fields(values: dict[str, FieldValue], schema: SheetSchema) -> str:
    """`**Field**: value` lines; lists and text go on the lines below their field name."""
    out = []
    for f in schema.fields:
        value = values.get(f.name)
        if value is None:
            continue
        if f.kind == "scalar":
            out.append(f"**{f.name}**: {value}")
        elif f.kind == "list":
            out.append(f"**{f.name}**:")
            out.extend(f"- {item}" for item in value)
        else:
            out.append(f"**{f.name}**:\n{value}")
    return "\n".join(out)


def _sections(text: str, schema: SheetSchema) -> list[tuple[str, list[str]]]:
    """Split free text into (key, value lines); text before the first key goes to the preamble field."""
    sections: list[tuple[str, list[str]]] = [(schema.preamble.name, [])]
    for line in normalize_newlines(text).split("\n"):
        key_line = _key_line(line, schema)
        if key_line is None:
            sections[-1][1].append(line)
        else:
            sections.append((key_line.key, [key_line.value]))
    return sections


def _key_line(line: str, schema: SheetSchema) -> Optional[_KeyLine]:
    """The key and value of a line that starts a field, or None for an ordinary line."""
    if _LIST_MARKER.match(line):
        return None
    bold = _BOLD_KEY.match(line)
    if bold:
        key = next(g for g in (bold["a"], bold["b"], bold["c"]) if g is not None).strip()
        if key.endswith(":"):
            found = _KeyLine(key[:-1].strip(), bold["rest"].lstrip(": \t"), True)
        else:
            after = _AFTER_BOLD_KEY.match(bold["rest"])
            if not after:
                return None
            found = _KeyLine(key, after["v"] if after["v"] is not None else after["w"] or "", True)
    else:
        plain = _PLAIN_KEY.match(line)
        if not plain:
            return None
        value = plain["v"] if plain["v"] is not None else plain["w"] or ""
        found = _KeyLine(plain["key"].strip(), value, False)
    key = clean_text(found.key).strip("* ")
    if not key:
        return None
    if schema.lookup(key) is not None or found.bold or _looks_like_field_name(key):
        return _KeyLine(key, found.value, found.bold)
    return None


def _looks_like_field_name(key: str) -> bool:
    words = key.split()
    return 0 < len(words) <= 4 and all(w[0].isupper() for w in words)


def _store(values: dict[str, FieldValue], schema: SheetSchema, key: str, lines: list[str],
           from_mapping_list: bool = False) -> None:
    field = schema.lookup(key)
    cleaned = [c for c in (clean_text(line) for line in lines) if c.lower() not in _ABSENT]
    if field is None:
        value = "; ".join(_strip_marker(c) for c in cleaned) if len(cleaned) > 1 else "".join(cleaned)
        if value:
            values.setdefault(schema.other.name, []).append(f"{key}: {value}")
        return
    if field.kind == "list":
        items = cleaned if from_mapping_list else _list_items(cleaned)
        items = [i for i in (_strip_marker(i) for i in items) if i.lower() not in _ABSENT]
        if items:
            values.setdefault(field.name, []).extend(items)
        return
    if field.kind == "text":
        value = clean_text("\n".join(lines))
    else:
        value = (", " if from_mapping_list else " ").join(cleaned)
    if value.lower() not in _ABSENT:
        values.setdefault(field.name, value)  # a scalar or text given twice keeps the first value


def _store_preamble(values: dict[str, FieldValue], schema: SheetSchema, lines: list[str]) -> None:
    """Text before the first key opens the preamble field (Biography): it goes before that field's own text."""
    field = schema.preamble
    text = clean_text("\n".join(lines))
    if not text or text.lower() in _ABSENT:
        return
    if field.kind == "list":
        values[field.name] = [*_list_items([text]), *values.get(field.name, [])]
    else:
        values[field.name] = f"{text}\n{values[field.name]}" if field.name in values else text


def _list_items(lines: list[str]) -> list[str]:
    """One item per line; a single line is split on `;` (else `,`) when every piece is at most 5 words."""
    if len(lines) != 1:
        return lines
    line = _strip_marker(lines[0])
    pieces = [p.strip() for p in line.split(";" if ";" in line else ",")]
    pieces = [p for p in pieces if p]
    if len(pieces) > 1 and all(len(p.split()) <= 5 for p in pieces):
        return pieces
    return [line]


def _strip_marker(item: str) -> str:
    return _LIST_MARKER.sub("", item, count=1).strip()


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else str(value)
