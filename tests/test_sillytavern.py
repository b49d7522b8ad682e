"""SillyTavern saved chats as a source: headers old and new, speakers, hidden messages, narration, swipes, macros,
group chats, cards as sheets, bad input under raise and skip, and the full pipeline's accounting (the round trip
through `grouprp chat --thread ... --save` is in test_inference.py, with a trained run)."""

import json
from collections import Counter
from pathlib import Path

import pytest

from grouprp.config import ConfigError, load_config
from grouprp.prepare import load_tokenizer, preview_examples, summarize
from grouprp.schema import DataError, Malformed, Thread
from grouprp.sources import file_format, read_threads

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample" / "sillytavern"
ONE = SAMPLE / "chats" / "Mira" / "Mira - 2025-03-02@19h12m44s015ms.jsonl"
GROUP = SAMPLE / "group chats" / "2025-03-05@21h40m02s300ms.jsonl"
NEW_HEADER = {"chat_metadata": {"integrity": "x", "tainted": True}, "user_name": "unused", "character_name": "unused"}


def data_config(path, *overrides):
    return load_config(None, [f"data.path={path}", "output_dir=/tmp/unused", *overrides]).data


def read(path, *overrides, left_out=None):
    return list(read_threads(data_config(path, *overrides), left_out))


def write_chat(path: Path, lines) -> Path:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines))
    return path


def manifest(cfg) -> dict:
    return summarize(cfg, load_tokenizer(cfg))


def examples(cfg) -> list:
    return [example for _, example in preview_examples(cfg, None, load_tokenizer(cfg))]


def message(name, text, user=False, **extra):
    return {"name": name, "is_user": user, "is_system": False, "send_date": "2025-03-02T19:12:44.015Z", "mes": text,
            **extra}


def test_a_one_on_one_chat_is_one_thread_whose_user_is_the_persona():
    left_out = Counter()
    [thread] = read(ONE, left_out=left_out)
    assert thread.id == ONE.stem and thread.user == "Ash" and thread.where == str(ONE)
    speakers = [p.character for p in thread.posts]
    assert set(speakers) == {"Mira", "Ash"} and speakers[:2] == ["Mira", "Ash"]
    # one hidden (OOC) message and one narrator line left out; 1 + 2 swipes not chosen (a list of one is none)
    assert len(thread.posts) == 9
    assert left_out == Counter(hidden_messages=1, narrator_messages=1, swipes_not_chosen=3)
    assert not any("OOC" in p.text or "rain thickens" in p.text for p in thread.posts)


def test_the_chosen_swipe_is_the_text_and_macros_become_the_names():
    [thread] = read(ONE)
    assert thread.posts[0].text.startswith("*The lamp above the ferry office gutters as Mira looks up")
    assert "You're late, Ash." in thread.posts[0].text and "{{" not in thread.posts[0].text
    assert thread.posts[2].text.startswith("*She closes the ledger slowly.*")  # swipe_id 1 of 3


def test_a_group_chat_without_a_header_names_each_speaker():
    left_out = Counter()
    [thread] = read(GROUP, left_out=left_out)
    assert thread.id == GROUP.stem and thread.user == "Ash"
    assert [p.character for p in thread.posts][:4] == ["Tobias", "Wren", "Ash", "Mira"]
    assert {p.character for p in thread.posts} == {"Tobias", "Wren", "Mira", "Ash"}
    assert thread.posts[4].text.startswith("Fair.") and "You haggle, Ash." in thread.posts[4].text
    assert thread.posts[5].text == "It was a good goat." and left_out == Counter(swipes_not_chosen=2)


def test_in_a_group_chat_the_users_char_macro_names_the_character_who_answers(tmp_path):
    """{{char}} in the user's message is the next character to speak; after the last one, the one before."""
    chat = write_chat(tmp_path / "group.jsonl", [
        NEW_HEADER, message("Ash", "Hey {{char}}.", user=True), message("Wren", "Hm."), message("Tobias", "Yes?"),
        message("Ash", "You, {{char}}.", user=True), message("Mira", "Me."),
        message("Ash", "Bye {{char}}.", user=True)])
    [thread] = read(chat)
    assert [p.text for p in thread.posts if p.character == "Ash"] == ["Hey Wren.", "You, Mira.", "Bye Mira."]


def test_a_folder_of_chats_gives_ids_below_the_folder_and_is_detected_by_content():
    threads = read(SAMPLE)
    assert [t.id for t in threads] == ["chats/Mira/" + ONE.stem, "group chats/" + GROUP.stem]
    assert file_format(ONE, None) == file_format(GROUP, None) == "sillytavern"
    assert file_format(ROOT / "data" / "sample" / "threads.jsonl", None) == "threads"
    assert [t.id for t in read(SAMPLE, "data.format=sillytavern")] == [t.id for t in threads]


def test_old_headers_name_the_user_and_character_and_new_ones_say_unused(tmp_path):
    old = {"user_name": "Ash", "character_name": "Mira", "create_date": "2023-06-19@14h20m01s", "chat_metadata": {}}
    chat = write_chat(tmp_path / "old.jsonl", [old, {"is_user": False, "mes": "Hello, {{user}}. I'm {{char}}."},
                                               {"is_user": True, "mes": "Hi <BOT>, <user> here."}])
    [thread] = read(chat)
    assert [(p.character, p.text) for p in thread.posts] == [("Mira", "Hello, Ash. I'm Mira."),
                                                             ("Ash", "Hi Mira, Ash here.")]
    chat = write_chat(tmp_path / "new.jsonl", [NEW_HEADER, message("Mira", "{{USER}}? {{ char }} here."),
                                               message("Ash", "It's <User>.", user=True)])
    [thread] = read(chat)
    assert thread.user == "Ash" and [p.text for p in thread.posts] == ["Ash? Mira here.", "It's Ash."]
    assert "unused" not in {p.character for p in thread.posts}


@pytest.mark.parametrize("line, problem", [
    ("{not json", "not valid JSON"),
    ('{"name": "Mira", "is_user": false}', "a message without `mes`"),
    ('{"name": "Mira", "mes": 7}', "`mes`: expected a string, got a number (7)"),
    ('{"mes": "who says this?"}', "a message without `name`"),
    ('["a", "list"]', "expected a JSON object (a message), got a list"),
])
def test_each_bad_line_names_the_file_and_line_or_is_counted_under_skip(tmp_path, line, problem):
    chat = write_chat(tmp_path / "bad.jsonl", [NEW_HEADER, message("Mira", "Hello."), line,
                                               message("Ash", "Hi.", user=True)])
    [record] = read(chat)
    assert isinstance(record, Malformed) and record.where == f"{chat}:3" and problem in record.problem
    cfg = load_config(ROOT / "configs" / "demo.yaml", [f"data.path={tmp_path}", f"output_dir={tmp_path / 'run'}",
                                                       "data.format=sillytavern"])
    with pytest.raises(DataError, match=f"{chat}:3: .*{problem[:12]}"):
        manifest(cfg)


def test_under_skip_a_bad_chat_is_one_malformed_entry_and_the_rest_is_used(tmp_path):
    write_chat(tmp_path / "bad.jsonl", [NEW_HEADER, '{"name": "Mira"}'])
    for source in (ONE, GROUP):
        (tmp_path / source.name).write_bytes(source.read_bytes())
    (tmp_path / "empty.jsonl").write_text("")
    cfg = load_config(ROOT / "configs" / "demo.yaml", [f"data.path={tmp_path}", f"output_dir={tmp_path / 'run'}",
                                                       "data.on_error=skip"])
    summary = manifest(cfg)
    assert summary["entries_in"] == 4 and summary["dropped"]["malformed"] == 2
    assert summary["entries_in"] == summary["entries_kept"] + sum(summary["dropped"].values())
    assert summary["entries_kept"] == 2
    assert summary["left_out"]["hidden_messages"] == 1 and summary["left_out"]["swipes_not_chosen"] == 5


def test_cards_become_the_sheets_of_the_characters_they_name(tmp_path):
    cards = ROOT / "data" / "sample" / "cards"
    left_out = Counter()
    [one, group] = read(SAMPLE, f"data.cards={cards}", left_out=left_out)
    sheets = {c.name: c.sheet for c in group.characters}
    assert set(sheets) == {"Mira", "Tobias"}  # Wren has no card, Ash (the user) neither
    assert sheets["Tobias"]["Personality"] == "anxious, loyal, wry, bad at haggling, good with goats"  # ccv3 wins
    assert sheets["Mira"]["Biography"].startswith("Mira runs the ferry office")  # {{char}} resolved
    assert sheets["Mira"]["Scenario"] == "A flood night at Vell Landing; Ash needs to cross the river."
    assert "Card" not in str(sheets) and "talkativeness" not in str(sheets)  # extensions are not rendered
    assert [c.name for c in one.characters] == ["Mira"] and not left_out.get("cards_unused")
    # through the configured mapping and schema, into the rendered prompt
    cfg = load_config(ROOT / "configs" / "demo.yaml", [f"data.path={GROUP}", f"output_dir={tmp_path}",
                                                       f"data.cards={cards}",
                                                       "data.card_sheet={description: Appearance}"])
    text = examples(cfg)[0].text
    assert "**Appearance**:\n- Tobias is the group's quartermaster" in text
    assert "Personality:" not in text  # not mapped any more


def test_a_bad_card_in_the_folder_is_malformed_input_and_an_unused_card_is_counted(tmp_path):
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "Mira.json").write_bytes((ROOT / "data" / "sample" / "cards" / "Mira.json").read_bytes())
    (cards / "Nobody.json").write_text(json.dumps({"spec": "chara_card_v2", "data": {"name": "Nobody"}}))
    (cards / "Broken.png").write_bytes(b"not an image")
    left_out = Counter()
    records = read(ONE, f"data.cards={cards}", left_out=left_out)
    assert isinstance(records[0], Malformed) and records[0].where == str(cards / "Broken.png")
    assert "not a PNG image" in records[0].problem and isinstance(records[1], Thread)
    assert left_out["cards_unused"] == 1
    with pytest.raises(ConfigError, match="data.cards: .* is not a folder"):
        data_config(ONE, f"data.cards={cards / 'Mira.json'}")
    with pytest.raises(ConfigError, match="data.card_sheet.looks: not a card field"):
        data_config(ONE, "data.card_sheet={looks: Appearance}")


def test_the_sample_chats_go_through_the_whole_pipeline(tmp_path, capsys):
    cfg = load_config(ROOT / "configs" / "sillytavern.yaml", [f"output_dir={tmp_path}"])
    summary = manifest(cfg)
    assert summary["entries_in"] == summary["entries_kept"] == 2 and summary["left_out"]["narrator_messages"] == 1
    group = next(e for i, e in preview_examples(cfg, None, load_tokenizer(cfg)) if i.startswith("group chats"))
    assert "Ash" in group.text and "[INST]" in group.text
    trained = "".join(group.text[a:b] for a, b in group.trained)
    assert "Wren: Flattery. Accepted." in trained and "He says it's recent." not in trained  # the user's turn
    from grouprp.cli import main

    assert main(["stats", str(ROOT / "configs" / "sillytavern.yaml"), f"output_dir={tmp_path}"]) == 0
    assert ("left out of input: hidden_messages 1, narrator_messages 1, swipes_not_chosen 5"
            in capsys.readouterr().out)
