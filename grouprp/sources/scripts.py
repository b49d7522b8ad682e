"""Visual-novel scripts: plain text (one utterance per line) or `.jsonl` rows, read into scenes of lines."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

from grouprp.schema import Malformed
from grouprp.sources.threads import _kind, read_json_lines

# `Name: text` (colon then a space) or `Name「text」`; a name is at most 40 characters with no colon or bracket
_SPOKEN = re.compile(r"^(?P<name>[^:\[\]()（）「」\n]{1,40}?)(?::\s+(?P<text>.*)|\s*「(?P<quoted>.*)」)$")
_QUOTES = [('"', '"'), ("\u201c", "\u201d"), ("\u300c", "\u300d"), ("\u300e", "\u300f")]
_SCENARIO = re.compile(r"^#\s*scene\s*:\s*(?P<text>.*)$", re.I)


@dataclass(frozen=True)
class Line:
    """One utterance: `speaker` is None for narration."""

    speaker: Optional[str]
    text: str


@dataclass(frozen=True)
class Scene:
    id: str
    lines: tuple[Line, ...]
    scenario: Optional[str] = None
    where: str = ""


def parse_line(raw: str) -> Optional[Line]:
    """A spoken line or narration; None for a blank line."""
    text = raw.strip()
    if not text:
        return None
    match = _SPOKEN.match(text)
    if not match or not match["name"].strip():
        return Line(None, text)
    spoken = match["text"] if match["text"] is not None else match["quoted"]
    return Line(match["name"].strip(), _unquote(spoken.strip()))


def _unquote(text: str) -> str:
    for left, right in _QUOTES:
        if len(text) >= 2 and text.startswith(left) and text.endswith(right) and right not in text[1:-1]:
            return text[1:-1].strip()
    return text


def read_script_text(path: Path) -> Iterator[Union[Scene, Malformed]]:
    """Scenes of a plain-text script. `***`, `---` or a `#` line ends a scene; `# Scene: ...` sets the next one's.

    Lines end only at real line breaks (`\n`, `\r\n`, `\r`): a form feed or a Unicode line separator inside a line
    is part of it, and a byte-order mark at the start of the file is not text."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        yield Malformed(f"{path}:{line}", "not UTF-8 text; re-save the file as UTF-8")
        return
    lines: list[Line] = []
    scenario: Optional[str] = None
    start, number = 1, 0
    for number, raw in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        stripped = raw.strip()
        if stripped in ("***", "---") or stripped.startswith("#"):
            if lines:
                yield Scene(f"{path.stem}:{start}", tuple(lines), scenario, f"{path}:{start}")
            lines, start = [], number + 1
            match = _SCENARIO.match(stripped)
            scenario = (match["text"].strip() or None) if match else None
            continue
        line = parse_line(raw)
        if line is not None:
            if not lines:
                start = number
            lines.append(line)
    if lines:
        yield Scene(f"{path.stem}:{start}", tuple(lines), scenario, f"{path}:{start}")
    elif not text.strip():
        yield Malformed(str(path), "empty file: no lines in it")


def read_script_rows(path: Path) -> Iterator[Union[Scene, Malformed]]:
    """Scenes from `.jsonl` rows {"scene": id, "speaker": name or null, "text": ..., "scenario": optional}."""
    current: Optional[str] = None
    lines: list[Line] = []
    scenario: Optional[str] = None
    where = ""
    found = False
    for number, row in read_json_lines(path):
        found = True
        here = f"{path}:{number}"
        problem = _row_problem(row)
        if problem:
            yield Malformed(here, problem)
            continue
        scene = str(row["scene"])
        if scene != current:
            if lines:
                yield Scene(f"{path.stem}:{current}", tuple(lines), scenario, where)
            current, lines, scenario, where = scene, [], None, here
        scenario = scenario or row.get("scenario")
        speaker = row.get("speaker")
        lines.append(Line(speaker.strip() if speaker else None, _unquote(row["text"].strip())))
    if lines:
        yield Scene(f"{path.stem}:{current}", tuple(lines), scenario, where)
    if not found:
        yield Malformed(str(path), "empty file: no lines in it")


def _row_problem(row) -> Optional[str]:
    if isinstance(row, Malformed):
        return row.problem
    if not isinstance(row, dict):
        return f"expected a JSON object (one line of the script), got {_kind(row)}"
    if "scene" not in row or not isinstance(row["scene"], (str, int)) or isinstance(row["scene"], bool):
        return "`scene` must be a string or number naming the scene"
    if not isinstance(row.get("text"), str):
        return f"`text` must be a string, got {_kind(row.get('text'))}"
    if row.get("speaker") is not None and not isinstance(row["speaker"], str):
        return f"`speaker` must be a string or null, got {_kind(row['speaker'])}"
    if row.get("scenario") is not None and not isinstance(row["scenario"], str):
        return f"`scenario` must be a string, got {_kind(row['scenario'])}"
    return None


def read_scenes(path: Path) -> Iterator[Union[Scene, Malformed]]:
    return read_script_rows(path) if path.suffix.lower() == ".jsonl" else read_script_text(path)
