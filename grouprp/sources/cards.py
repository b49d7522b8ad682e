"""Character cards: grouprp's YAML card for single-character mode ({name, source, persona: [{question, answer}],
traits}), and the Character Card V1/V2/V3 files roleplayers already have (SillyTavern's `.json`, or a `.png` with
the card in a `chara` or `ccv3` text chunk), used as the single-character card or as sheets for group threads."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from grouprp.schema import TAVERN_FIELDS, DataError

TAVERN_SUFFIXES = (".json", ".png")
TAVERN_SPECS = ("chara_card_v2", "chara_card_v3")


@dataclass(frozen=True)
class Card:
    """Who the character is: name, where they come from, persona questions and answers, traits."""

    name: str
    source: str
    persona: tuple[tuple[str, str], ...] = ()
    traits: tuple[str, ...] = ()
    description: str = ""  # a narrative persona (a Tavern card's description), shown before the persona lines
    examples: tuple[tuple[str, str], ...] = ()  # example dialogue: ("user" | "char", text), "" role between blocks


def load_card(path: Union[str, Path], user_label: str = "{user}") -> Card:
    """Read and validate a character card (YAML, or a Character Card file); errors name the file and the field."""
    path = Path(path)
    if path.suffix.lower() in TAVERN_SUFFIXES:
        return read_tavern_card(path).as_card(user_label)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise DataError(f"data.card: cannot read {path} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; re-save the card as UTF-8") from None
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: a card is a mapping with name, source, persona and traits")
    unknown = set(raw) - {"name", "source", "persona", "traits"}
    if unknown:
        raise DataError(f"{path}: unknown field {sorted(unknown)[0]!r}; a card has name, source, persona, traits")
    for key in ("name", "source"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise DataError(f"{path}: `{key}` must be a non-empty string")
    persona = raw.get("persona") or []
    if not isinstance(persona, list):
        raise DataError(f"{path}: `persona` must be a list of {{question, answer}} items")
    pairs = []
    for i, item in enumerate(persona):
        if not isinstance(item, dict) or set(item) != {"question", "answer"} or not all(
                isinstance(item[k], str) and item[k].strip() for k in ("question", "answer")):
            raise DataError(f"{path}: persona[{i}] must have exactly a `question` and an `answer`, both text")
        pairs.append((item["question"].strip(), item["answer"].strip()))
    traits = raw.get("traits") or []
    if not isinstance(traits, list) or not all(isinstance(t, (str, int, float)) for t in traits):
        raise DataError(f"{path}: `traits` must be a list of short texts")
    return Card(raw["name"].strip(), raw["source"].strip(), tuple(pairs), tuple(str(t).strip() for t in traits))


@dataclass(frozen=True)
class TavernCard:
    """A Character Card (V1, V2 or V3) as read: the text fields grouprp uses, and the rest kept."""

    name: str
    description: str = ""
    personality: str = ""
    scenario: str = ""
    first_mes: str = ""
    mes_example: str = ""
    spec: str = "v1"  # chara_card_v2, chara_card_v3, or v1 (no `spec`: the fields at the top level)
    source: str = ""  # `extensions.grouprp.source`: the work the character is from (single-character prompts)
    extensions: dict = field(default_factory=dict)  # kept, never rendered
    path: str = ""
    chunks: tuple[str, ...] = ()  # a PNG's card chunks, the one read first (ccv3 before chara)

    def resolved(self, user: str, field_name: str) -> str:
        """A field with {{char}} and {{user}} (and <BOT>, <CHAR>, <USER>) replaced by the names."""
        return replace_macros(getattr(self, field_name), user=user, char=self.name).strip()

    def sheet(self, user: Optional[str], fields: dict[str, str]) -> dict[str, str]:
        """The card as a sheet mapping: its name, and each card field of `fields` under its sheet key (empty ones
        left out; a key given twice gets the texts joined by a blank line)."""
        out = {"Character Name": self.name}
        for card_field, key in fields.items():
            value = self.resolved(user, card_field)
            if value:
                out[key] = f"{out[key]}\n\n{value}" if key in out else value
        return out

    def as_card(self, user_label: str = "{user}") -> Card:
        """The single-character card: persona from the description, traits from the personality, example
        dialogue from mes_example; {{user}} is written as `user_label`."""
        return Card(self.name, self.source or "an original story", traits=_traits(self.resolved(user_label,
                                                                                                "personality")),
                    description=self.resolved(user_label, "description"),
                    examples=parse_examples(self.mes_example, user=user_label, char=self.name))


def card_files(folder: Union[str, Path]) -> list[Path]:
    """The Character Card files below a folder, in path order."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in TAVERN_SUFFIXES)


def read_tavern_card(path: Union[str, Path]) -> TavernCard:
    """A Character Card from a `.json` file or a `.png` image; V3's `ccv3` chunk wins over V2's `chara`."""
    path = Path(path)
    chunks: tuple[str, ...] = ()
    if path.suffix.lower() == ".png":
        chunks, raw = _png_card_text(path)
    else:
        try:
            raw = path.read_bytes().decode("utf-8-sig")
        except OSError as exc:
            raise DataError(f"{path}: cannot read the card ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise DataError(f"{path}: not UTF-8 text; re-save the card as UTF-8") from None
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: the card is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
                        ) from None
    return dataclasses.replace(parse_tavern_card(obj, str(path)), chunks=chunks)


def parse_tavern_card(obj: Any, where: str) -> TavernCard:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: a character card is a JSON object")
    spec = obj.get("spec")
    if spec is None:
        data, kind = obj, "v1"
        if "name" not in obj:
            raise DataError(f"{where}: not a character card (no `spec` and no `name`)")
    elif spec in TAVERN_SPECS:
        data, kind = obj.get("data"), spec
        if not isinstance(data, dict):
            raise DataError(f"{where}: a {spec} card keeps its fields in `data`, an object")
    else:
        raise DataError(f"{where}: unknown card spec {spec!r}; grouprp reads {', '.join(TAVERN_SPECS)} and V1 cards "
                        "(no spec)")
    values = {}
    prefix = "" if kind == "v1" else "data."
    for key in TAVERN_FIELDS:
        value = data.get(key)
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise DataError(f"{where}: `{prefix}{key}` must be text, got {type(value).__name__}")
        values[key] = value
    if not values["name"].strip():
        raise DataError(f"{where}: `{prefix}name` is empty; a card needs the character's name")
    extensions = data.get("extensions") or {}
    if not isinstance(extensions, dict):
        raise DataError(f"{where}: `{prefix}extensions` must be an object")
    ours = extensions.get("grouprp")
    source = ours.get("source", "") if isinstance(ours, dict) else ""
    values["name"] = values["name"].strip()
    return TavernCard(**values, spec=kind, source=str(source), extensions=extensions, path=where)


def _png_card_text(path: Path) -> tuple[tuple[str, ...], str]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.format != "PNG":
                raise DataError(f"{path}: a {image.format} image; a card image is a PNG")
            image.load()  # text chunks after the image data are read with it
            chunks = {key.lower(): value for key, value in getattr(image, "text", {}).items()}
    except UnidentifiedImageError:
        raise DataError(f"{path}: not a PNG image (a card is a .png with a `chara` or `ccv3` text chunk, or .json)"
                        ) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the image ({exc})") from None
    key = "ccv3" if "ccv3" in chunks else "chara" if "chara" in chunks else None
    if key is None:
        raise DataError(f"{path}: a PNG without a character card (no `chara` or `ccv3` text chunk); export the "
                        "card from SillyTavern with its data, or use its .json")
    try:
        found = tuple(k for k in ("ccv3", "chara") if k in chunks)
        return found, base64.b64decode(chunks[key].strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise DataError(f"{path}: the `{key}` text chunk is not base64 text of the card's JSON") from None


_MACROS = {"user": re.compile(r"\{\{\s*user\s*\}\}|<user>", re.IGNORECASE),
           "char": re.compile(r"\{\{\s*char\s*\}\}|<bot>|<char>", re.IGNORECASE)}


def replace_macros(text: str, user: Optional[str], char: Optional[str]) -> str:
    """SillyTavern's name macros, case-insensitive as SillyTavern matches them: {{user}} and <USER> become
    `user`, {{char}}, <BOT> and <CHAR> become `char` (a name that is None leaves its macros as they are)."""
    if user is not None:
        text = _MACROS["user"].sub(lambda _: user, text)
    if char is not None:
        text = _MACROS["char"].sub(lambda _: char, text)
    return text


_START = re.compile(r"<start>", re.IGNORECASE)


def parse_examples(text: str, user: str, char: str) -> tuple[tuple[str, str], ...]:
    """mes_example as SillyTavern reads it: blocks after each <START>, a line opening with `{{user}}:` or
    `{{char}}:` (or the names) starts a turn, other lines continue it. Returns (role, text) pairs, with ("", "")
    between blocks."""
    labels = (("user", f"{user}:"), ("char", f"{char}:"))
    out: list[tuple[str, str]] = []
    for block in _START.split(text):
        turns: list[list[str]] = []
        for line in replace_macros(block, user=user, char=char).splitlines():
            line = line.strip()
            role = next((role for role, label in labels if line.startswith(label)), None)
            if role:
                turns.append([role, line.split(":", 1)[1].strip()])
            elif turns and line:
                turns[-1][1] += "\n" + line
        turns = [t for t in turns if t[1]]
        if turns and out:
            out.append(("", ""))
        out += [(role, body) for role, body in turns]
    return tuple(out)


def _traits(personality: str) -> tuple[str, ...]:
    """A card's personality as a traits list: comma-separated words stay items; a sentence is one item."""
    parts = [p.strip() for p in re.split(r"[,;\n]", personality) if p.strip()]
    if parts and all(len(p.split()) <= 4 for p in parts):
        return tuple(parts)
    return (personality.strip(),) if personality.strip() else ()
