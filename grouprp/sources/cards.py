"""Character cards for single-character mode: YAML {name, source, persona: [{question, answer}], traits}."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

import yaml

from grouprp.schema import DataError


@dataclass(frozen=True)
class Card:
    """Who the character is: name, where they come from, persona questions and answers, traits."""

    name: str
    source: str
    persona: tuple[tuple[str, str], ...] = ()
    traits: tuple[str, ...] = ()


def load_card(path: Union[str, Path]) -> Card:
    """Read and validate a character card; errors name the file and the field."""
    path = Path(path)
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
