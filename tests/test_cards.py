"""Character Cards V1/V2/V3 (.json, and .png with `chara` / `ccv3` text chunks): fields, macros, example dialogue,
the single-character card, `grouprp card`, the sample-card script, and each bad input."""

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from grouprp.cli import main
from grouprp.config import load_config
from grouprp.prepare import load_tokenizer, preview_examples
from grouprp.schema import DataError
from grouprp.sources.cards import load_card, parse_examples, read_tavern_card, replace_macros

ROOT = Path(__file__).resolve().parent.parent
CARDS = ROOT / "data" / "sample" / "cards"


def png(path: Path, **chunks) -> Path:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    Image.new("RGB", (4, 4), (10, 20, 30)).save(path, pnginfo=info)
    return path


def b64(obj) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


def v2(**data):
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "Rei", **data}}


def test_the_sample_cards_v2_json_and_v3_png():
    mira = read_tavern_card(CARDS / "Mira.json")
    assert (mira.spec, mira.name, mira.source) == ("chara_card_v2", "Mira", "The Vell Crossings")
    assert mira.personality == "dry, brave, practical, secretly kind" and mira.chunks == ()
    assert set(mira.extensions) == {"talkativeness", "fav", "world", "depth_prompt", "grouprp"}
    tobias = read_tavern_card(CARDS / "Tobias.png")
    assert tobias.spec == "chara_card_v3" and tobias.chunks == ("ccv3", "chara")
    assert tobias.personality.endswith("good with goats")  # only the ccv3 chunk says so


def test_ccv3_wins_over_chara_whatever_their_order_and_case(tmp_path):
    card = png(tmp_path / "c.png", chara=b64(v2(personality="from v2")),
               CCV3=b64({"spec": "chara_card_v3", "spec_version": "3.0", "data": {"name": "Rei",
                                                                                  "personality": "from v3"}}))
    assert read_tavern_card(card).personality == "from v3"
    only_v2 = png(tmp_path / "d.png", chara=b64(v2(personality="from v2")))
    assert read_tavern_card(only_v2).personality == "from v2"


def test_a_v1_card_keeps_its_fields_at_the_top(tmp_path):
    path = tmp_path / "v1.json"
    path.write_text(json.dumps({"name": "Rei", "description": "A student.", "personality": "calm",
                                "mes_example": "<START>\n<USER>: Hi.\n<BOT>: Hello."}))
    card = read_tavern_card(path)
    assert (card.spec, card.description, card.personality) == ("v1", "A student.", "calm")
    assert load_card(path).examples == (("user", "Hi."), ("char", "Hello."))


def test_macros_are_replaced_in_any_case_and_spacing():
    text = "{{user}} {{USER}} {{ User }} <USER> <user> {{char}} {{Char}} <BOT> <bot> <CHAR> {{charx}} <chars>"
    assert replace_macros(text, user="Ash", char="Mira") == (
        "Ash Ash Ash Ash Ash Mira Mira Mira Mira Mira {{charx}} <chars>")
    assert replace_macros("{{user}} and {{char}}", user=None, char="Mira") == "{{user}} and Mira"


def test_example_dialogue_is_split_at_start_with_continuation_lines_and_names_as_prefixes():
    text = ("Some text before the first block is not dialogue.\n<START>\n{{user}}: Where were you?\n"
            "{{char}}: *She shrugs.* Out.\nNowhere special.\n<start>\nTakumi: Nice sword.\nRei: Thanks, "
            "{{user}}.\n<START>\n\n<START>\n{{char}}: Alone.")
    assert parse_examples(text, user="Takumi", char="Rei") == (
        ("user", "Where were you?"), ("char", "*She shrugs.* Out.\nNowhere special."), ("", ""),
        ("user", "Nice sword."), ("char", "Thanks, Takumi."), ("", ""), ("char", "Alone."))


def test_a_card_file_is_the_card_of_single_character_mode(tmp_path):
    path = tmp_path / "rei.json"
    path.write_text(json.dumps(v2(description="{{char}} is a second-year student who guards the library.",
                                  personality="reserved, precise, loyal",
                                  mes_example="<START>\n{{user}}: Is the library open?\n{{char}}: For you, "
                                              "{{user}}, it is never quite closed.",
                                  extensions={"grouprp": {"source": "Lantern Academy"}})))
    cfg = load_config(ROOT / "configs" / "single_character.yaml", [f"output_dir={tmp_path / 'run'}",
                                                                   f"data.card={path}", "data.num_proc=1"])
    [(_, example)] = list(preview_examples(cfg, 1, load_tokenizer(cfg)))
    assert "playing the character Rei from Lantern Academy" in example.text
    assert ("a narrative format:\nRei is a second-year student who guards the library.\n\n{user}: Is the library "
            "open?\nRei: For you, {user}, it is never quite closed.\n\nTraits list: Rei's persona = [ reserved, "
            "precise, loyal ]") in example.text


def test_grouprp_card_prints_the_fields_as_they_are_used(capsys):
    assert main(["card", str(CARDS / "Tobias.png")]) == 0
    out = capsys.readouterr().out
    assert "chara_card_v3 (from the ccv3 chunk of ccv3 and chara)" in out
    assert "**Biography**:\n  Tobias is the group's quartermaster" in out
    assert "- Personality: anxious, loyal, wry, bad at haggling, good with goats" in out
    assert "traits: anxious, loyal, wry, bad at haggling, good with goats" in out
    assert "    {user}: Can we afford supper?\n    Tobias: We can afford soup. Singular." in out
    assert "extensions (kept, not rendered): talkativeness" in out
    assert main(["card", str(ROOT / "data" / "sample" / "vn" / "rei.yaml")]) == 0
    assert "name: Rei" in capsys.readouterr().out


@pytest.mark.parametrize("make, problem", [
    (lambda d: png(d / "x.png", Title="a portrait"), "a PNG without a character card (no `chara` or `ccv3`"),
    (lambda d: png(d / "x.png", chara="%%% not base64 %%%"), "the `chara` text chunk is not base64"),
    (lambda d: png(d / "x.png", ccv3=base64.b64encode(b"{nope").decode()), "the card is not valid JSON"),
    (lambda d: (d / "x.png").write_bytes(b"GIF89a...") and d / "x.png", "not a PNG image"),
    (lambda d: (d / "x.json").write_text(json.dumps({"spec": "chara_card_v9", "data": {}})) and d / "x.json",
     "unknown card spec 'chara_card_v9'"),
    (lambda d: (d / "x.json").write_text(json.dumps(v2(description=["a", "list"]))) and d / "x.json",
     "`data.description` must be text"),
    (lambda d: (d / "x.json").write_text(json.dumps(v2(name=" "))) and d / "x.json", "`data.name` is empty"),
    (lambda d: (d / "x.json").write_text("{broken") and d / "x.json", "not valid JSON (Expecting"),
])
def test_each_bad_card_is_one_line_naming_the_file(tmp_path, make, problem):
    path = make(tmp_path)
    with pytest.raises(DataError) as caught:
        read_tavern_card(path)
    assert str(caught.value).startswith(f"{path}: ") and problem in str(caught.value)
    assert "\n" not in str(caught.value)
    assert main(["card", str(path)]) == 2


def test_the_script_reproduces_the_sample_cards(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_sample_cards.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    assert (tmp_path / "Mira.json").read_bytes() == (CARDS / "Mira.json").read_bytes()
    made, shipped = Image.open(tmp_path / "Tobias.png"), Image.open(CARDS / "Tobias.png")
    made.load(), shipped.load()
    assert made.text == shipped.text and made.tobytes() == shipped.tobytes()
