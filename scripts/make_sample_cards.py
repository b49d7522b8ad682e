"""Write the sample Character Cards in data/sample/cards: Mira as a V2 JSON card (in the hybrid layout
SillyTavern saves, V1 fields beside `spec` and `data`), and Tobias as a PNG portrait carrying the card the way
SillyTavern exports it: a `chara` text chunk (V2) and a `ccv3` chunk (V3), each base64 of the card's JSON. The
V3 chunk says a little more than the V2 one, so a reader that prefers V3 (as the spec asks) can be told apart.

    python scripts/make_sample_cards.py [--out data/sample/cards]

All text is original to this project. tests/test_cards.py checks that this script reproduces the files.
"""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path

from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

ROOT = Path(__file__).resolve().parent.parent

MIRA = {
    "name": "Mira",
    "description": "{{char}} runs the ferry office at Vell Landing and rows the crossing herself when the river is "
                   "too rough for anyone else. She is in her thirties, broad-shouldered, with a scar across one "
                   "palm from a snapped oar line. She keeps the ledgers neat and her opinions blunt.",
    "personality": "dry, brave, practical, secretly kind",
    "scenario": "A flood night at Vell Landing; {{user}} needs to cross the river.",
    "first_mes": "*{{char}} looks up from the ledger.* Office is closed, {{user}}.",
    "mes_example": "<START>\n{{user}}: Is the river always this loud?\n{{char}}: Only when it wants something. "
                   "Tonight it wants the bridge.\n<START>\n{{user}}: Why do you still row?\n"
                   "{{char}}: Because somebody has to, and the somebodies keep drowning.\n*She flexes her scarred "
                   "hand.* I don't.",
    "creator_notes": "Sample card for grouprp.",
    "system_prompt": "",
    "post_history_instructions": "",
    "alternate_greetings": [],
    "tags": ["sample", "river"],
    "creator": "grouprp",
    "character_version": "1.0",
    "extensions": {"talkativeness": "0.5", "fav": False, "world": "",
                   "depth_prompt": {"prompt": "", "depth": 4, "role": "system"},
                   "grouprp": {"source": "The Vell Crossings"}},
}

TOBIAS = {
    "name": "Tobias",
    "description": "{{char}} is the group's quartermaster: he counts every coin twice and still comes up short. "
                   "Once a clerk in a river town, he left after a bookkeeping scandal that was not his fault.",
    "personality": "anxious, loyal, wry, bad at haggling",
    "scenario": "An inn below the mountain pass, the night before the first snow.",
    "first_mes": "*{{char}} sets down three chipped mugs.* We can afford one room or one map.",
    "mes_example": "<START>\n{{user}}: Can we afford supper?\n{{char}}: We can afford soup. Singular.",
    "creator_notes": "Sample card for grouprp.",
    "system_prompt": "",
    "post_history_instructions": "",
    "alternate_greetings": [],
    "tags": ["sample"],
    "creator": "grouprp",
    "character_version": "1.0",
    "extensions": {"talkativeness": "0.6"},
}
TOBIAS_V3_PERSONALITY = "anxious, loyal, wry, bad at haggling, good with goats"


def v2(data: dict) -> dict:
    """The hybrid layout SillyTavern saves: the V1 fields at the top, then spec and data."""
    top = {key: data[key] for key in ("name", "description", "personality", "scenario", "first_mes", "mes_example")}
    return {**top, "creatorcomment": data["creator_notes"], "tags": data["tags"], "spec": "chara_card_v2",
            "spec_version": "2.0", "data": data}


def v3(data: dict) -> dict:
    return {"spec": "chara_card_v3", "spec_version": "3.0",
            "data": {**data, "group_only_greetings": [], "nickname": "Toby", "creation_date": 1741200000,
                     "modification_date": 1741200000}}


def portrait() -> Image.Image:
    """A small original image: a coin on a dark table."""
    image = Image.new("RGB", (96, 96), (46, 38, 30))
    draw = ImageDraw.Draw(image)
    draw.ellipse((28, 28, 68, 68), fill=(201, 162, 72), outline=(120, 90, 30), width=3)
    draw.line((40, 48, 56, 48), fill=(120, 90, 30), width=3)
    return image


def encode(card: dict) -> str:
    return base64.b64encode(json.dumps(card, ensure_ascii=False).encode("utf-8")).decode("ascii")


def write(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    mira = out / "Mira.json"
    mira.write_text(json.dumps(v2(MIRA), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    info = PngInfo()
    info.add_text("chara", encode(v2(TOBIAS)))
    info.add_text("ccv3", encode(v3({**TOBIAS, "personality": TOBIAS_V3_PERSONALITY})))
    tobias = out / "Tobias.png"
    portrait().save(tobias, pnginfo=info)
    return [mira, tobias]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "sample" / "cards")
    for path in write(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
