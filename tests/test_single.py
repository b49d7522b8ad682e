"""Single-character mode: script reading, replies and history, the alichat prompt, cards and scenarios."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from conftest import ROOT, TOKENIZER
from grouprp.cli import main
from grouprp.config import load_config
from grouprp.filters import Accounting
from grouprp.formats import get_format
from grouprp.prepare import load_prepared, prepare
from grouprp.modes import get_mode
from grouprp.modes.single import replies_in_scene
from grouprp.schema import DataError, Reply
from grouprp.sources.cards import Card, load_card
from grouprp.sources.scenarios import ScenarioSource
from grouprp.sources.scripts import Line, Scene, parse_line, read_scenes
from grouprp.tokenize import IGNORE_INDEX, encode_batch

def read_replies(cfg):
    return get_mode(cfg).read(Accounting())


CARD = Card("Nox", "The Ferryman's Lantern", (("What do you carry?", "Lamps. Mostly."),), ("curt", "loyal"))


@pytest.mark.parametrize("raw, line", [
    ("Nox: The river is high.", Line("Nox", "The river is high.")),
    ('Nox: "The river is high."', Line("Nox", "The river is high.")),
    ("Nox\u300cThe river is high.\u300d", Line("Nox", "The river is high.")),
    ("Guard 2: Halt!", Line("Guard 2", "Halt!")),
    ("At 3:00 the bell rang.", Line(None, "At 3:00 the bell rang.")),
    ("The fog lifted.", Line(None, "The fog lifted.")),
    ("A name far too long to be anybody's real name here: hello", Line(None, "A name far too long to be anybody's real name here: hello")),
    ("Note:no space after the colon", Line(None, "Note:no space after the colon")),
])
def test_spoken_lines_and_narration(raw, line):
    assert parse_line(raw) == line


def test_scene_breaks_and_scenarios(tmp_path):
    script = tmp_path / "s.txt"
    script.write_text("# Scene: A dock at dawn.\nNox: One.\n\nMara: Two.\n***\nNox: Three.\n---\n# chapter two\n"
                      "Nox: Four.\n# Scene: A tavern.\nMara: Five.\n")
    scenes = list(read_scenes(script))
    assert [(s.scenario, [l.text for l in s.lines]) for s in scenes] == [
        ("A dock at dawn.", ["One.", "Two."]), (None, ["Three."]), (None, ["Four."]), ("A tavern.", ["Five."])]
    assert scenes[0].where == f"{script}:2"


def data_cfg(tmp_path, *overrides):
    card = tmp_path / "card.yaml"
    card.write_text("name: Nox\nsource: The Ferryman's Lantern\npersona:\n  - question: What do you carry?\n"
                    "    answer: Lamps. Mostly.\ntraits: [curt, loyal]\n")
    path = tmp_path / "c.yaml"
    path.write_text(f"output_dir: {tmp_path / 'out'}\nmodel: {{tokenizer: {TOKENIZER}}}\n"
                    f"data: {{path: {tmp_path / 'script.txt'}, template: alichat, character: Nox, aliases: [Old Nox],"
                    f" user_name: Pell, card: {card}, num_proc: 1, scenario: {{text: A quiet river.}}}}\n")
    return load_config(path, list(overrides))


SCENE = Scene("s", (
    Line("Mara", "Who goes there?"), Line("Pell", "Only me."), Line("Pell", "And my cat."),
    Line("Old Nox", "Late again."), Line(None, "He set down the lamp."), Line("Nox", "Sit."),
    Line("Mara", "Be kind."), Line("Nox", "I am always kind."), Line(None, "Nobody laughed."),
))


def test_each_run_of_the_character_is_one_reply_with_merged_history(tmp_path):
    cfg = data_cfg(tmp_path).data
    replies = replies_in_scene(SCENE, cfg)
    assert replies == [
        ((("Mara", "Who goes there?"), ("{user}", "Only me. And my cat.")), "Late again. Sit."),
        ((("Mara", "Who goes there?"), ("{user}", "Only me. And my cat."), ("Nox", "Late again. Sit."),
          ("Mara", "Be kind.")), "I am always kind."),
    ]


def test_history_is_cut_after_merging_and_narration_can_be_kept(tmp_path):
    cfg = data_cfg(tmp_path, "data.history_turns=1", "data.include_narration=true", "data.user_label=Pell").data
    replies = replies_in_scene(SCENE, cfg)
    # with narration kept, it separates the two lines, so there are three replies
    assert replies == [((("Pell", "Only me. And my cat."),), "Late again."),
                       (((None, "He set down the lamp."),), "Sit."),
                       ((("Mara", "Be kind."),), "I am always kind.")]
    assert replies_in_scene(SCENE, data_cfg(tmp_path, "data.history_turns=0").data)[0][0] == ()


def test_alichat_prompt_is_exact_and_trains_the_reply_only():
    reply = Reply("r", "A quiet river.", (("Mara", "Who goes there?"), ("{user}", "Only me.")), "Late again.")
    example = get_format("alichat", False, card=CARD, character="Nox", user_label="{user}").render(reply)
    assert example.text == (
        "You are an expert roleplaying model that specializes in playing the character Nox from The Ferryman's "
        "Lantern. Below is some information about Nox's personality and traits. Use this information to roleplay "
        "as Nox in a conversation whose setting is described by the \"scenario\" below.\n\n"
        "Character's description of their own personality, told in a narrative format:\n"
        "{user}: What do you carry?\nNox: Lamps. Mostly.\n\n"
        "Traits list: Nox's persona = [ curt, loyal ]\n\n"
        "Scenario: A quiet river.\n\n"
        "### Instruction:\nWrite Nox's next reply in a chat between {user} and Nox. Write a single reply only.\n\n"
        "### Chat history:\nMara: Who goes there?\n{user}: Only me.\n\n"
        "### Response:\nNox: Late again.")
    assert example.trained_text() == "Late again." and example.append_eos
    named = get_format("alichat", True, card=CARD, character="Nox").render(reply)
    assert named.trained_text() == "Nox: Late again."


def test_trained_tokens_are_the_reply_and_eos(tokenizer):
    reply = Reply("r", "A quiet river.", (("Mara", "Who goes there?"),), "Late again, as always.")
    tokens = encode_batch([get_format("alichat", False, card=CARD, character="Nox").render(reply)], tokenizer)[0]
    trained = [t for t, label in zip(tokens.input_ids, tokens.labels) if label != IGNORE_INDEX]
    assert trained[-1] == tokenizer.eos_token_id and tokens.input_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(trained[:-1]).strip() == "Late again, as always."


def test_sample_script_gives_one_example_per_reply(tmp_path, tokenizer):
    cfg = load_config(ROOT / "configs" / "single_character.yaml", [f"output_dir={tmp_path}", "data.num_proc=1"])
    replies = sum(len(replies_in_scene(s, cfg.data)) for s in read_scenes(Path(cfg.data.path)))
    runs = 0
    for scene in read_scenes(Path(cfg.data.path)):
        spoken = [l.speaker in ("Rei", "Rei Kisaragi", "Kisaragi Rei") for l in scene.lines if l.speaker]
        runs += sum(1 for i, is_rei in enumerate(spoken) if is_rei and (i == 0 or not spoken[i - 1]))
    assert replies == runs >= 15
    manifest = prepare(cfg, tokenizer).manifest
    assert manifest["examples"] == manifest["entries_kept"] == replies
    assert manifest["entries_in"] == replies and manifest["template"] == "alichat"


def test_a_reply_too_long_for_sequence_len_loses_its_oldest_history_first(tmp_path, tokenizer):
    lines = [f"{('Mara', 'Ivo')[i % 2]}: {'Line number %d of a long and winding conversation. ' % i * 3}"
             for i in range(12)]
    (tmp_path / "script.txt").write_text("\n".join(lines + ["Nox: Short answer.", "Nox\u300c" + "word " * 200 + "\u300d"]))
    cfg = data_cfg(tmp_path, "data.sequence_len=600", "data.history_turns=10")
    prepare(cfg, tokenizer)
    dataset, _ = load_prepared(tmp_path / "out")
    (row,) = dataset
    text = tokenizer.decode(row["input_ids"], skip_special_tokens=False)
    assert row["length"] <= 600 and "Line number 11" in text and "Line number 2 " not in text
    assert text.endswith("Short answer. " + "word " * 199 + "word</s>")  # both Nox lines are one reply
    manifest = prepare(data_cfg(tmp_path, "data.sequence_len=300"), tokenizer).manifest  # the reply alone is longer
    assert (manifest["entries_in"], manifest["examples"], manifest["dropped"]["too_long"]) == (1, 0, 1)


@pytest.mark.parametrize("text, problem", [
    ("source: x\n", "`name` must be a non-empty string"),
    ("name: Nox\nsource: x\npersona:\n  - question: Why\n", "persona[0] must have exactly a `question` and an `answer`"),
    ("name: Nox\nsource: x\nmood: grim\n", "unknown field 'mood'"),
    ("name: Nox\nsource: x\ntraits: curt\n", "`traits` must be a list"),
    ("name: [Nox\n", "not valid YAML"),
])
def test_bad_cards_name_the_file_and_field(tmp_path, text, problem):
    path = tmp_path / "card.yaml"
    path.write_text(text)
    with pytest.raises(DataError, match=str(path)) as error:
        load_card(path)
    assert problem in str(error.value)


def test_a_card_for_another_character_is_an_error(tmp_path):
    (tmp_path / "script.txt").write_text("Nox: Hi.\n")
    cfg = data_cfg(tmp_path, "data.character=Mara")
    with pytest.raises(DataError, match="the card is for 'Nox' but data.character is 'Mara'"):
        list(read_replies(cfg))
    cfg = data_cfg(tmp_path, "data.character=Mara", "data.aliases=[nox]")
    assert [r.text for r in read_replies(cfg)] == ["Hi."]  # Nox's lines are now Mara's


def test_bad_script_rows_and_bytes_are_reported_with_file_and_line(tmp_path, capsys):
    cfg_path = tmp_path / "c.yaml"
    data_cfg(tmp_path)
    rows = tmp_path / "script.jsonl"
    rows.write_text('{"scene": 1, "speaker": "Nox", "text": "Hi."}\n{"scene": 1, "speaker": 7, "text": "x"}\n')
    cfg_path.write_text(f"data: {{path: {rows}, template: alichat, character: Nox, card: {tmp_path / 'card.yaml'}, "
                        "scenario: {text: x}}\n")
    assert main(["preview", str(cfg_path)]) == 2
    assert f"{rows}:2: `speaker` must be a string or null" in capsys.readouterr().err
    broken = tmp_path / "script.txt"
    broken.write_bytes(b"Nox: fine\nNox: caf\xe9\n")
    cfg_path.write_text(f"data: {{path: {broken}, template: alichat, character: Nox, card: {tmp_path / 'card.yaml'}, "
                        "scenario: {text: x}}\n")
    assert main(["preview", str(cfg_path)]) == 2
    assert f"{broken}:2: not UTF-8 text" in capsys.readouterr().err


class FakeChatServer:
    """An OpenAI-compatible /chat/completions on 127.0.0.1 that can fail its first requests."""

    def __init__(self, failures: int = 0):
        self.requests: list[dict] = []
        self.failures = failures
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if len(server.requests) <= server.failures:
                    self.send_response(503)
                    self.end_headers()
                    return
                answer = {"choices": [{"message": {"role": "assistant", "content": " A misty riverbank at dusk. "}}]}
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def openai_cfg(tmp_path, url, *overrides):
    (tmp_path / "script.txt").write_text("Mara: Who goes there?\nNox: Late again.\n***\nNox: Alone now.\n")
    return data_cfg(tmp_path, "data.scenario.provider=openai", f"data.scenario.base_url={url}",
                    "data.scenario.model=tiny", "data.scenario.api_key_env=GROUPRP_TEST_KEY", *overrides)


def test_openai_scenarios_are_asked_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("GROUPRP_TEST_KEY", "sk-test")
    server = FakeChatServer()
    try:
        cfg = openai_cfg(tmp_path, server.url)
        replies = list(read_replies(cfg))
        assert [r.scenario for r in replies] == ["A misty riverbank at dusk."] * 2
        assert len(server.requests) == 2  # one per scene
        request = server.requests[0]
        assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test"
        assert request["body"]["model"] == "tiny" and "Mara: Who goes there?" in request["body"]["messages"][1]["content"]
        assert list(read_replies(cfg)) == replies
        assert len(server.requests) == 2  # the rerun asked nothing
        assert "sk-test" not in json.dumps(cfg.data.scenario.__dict__)
    finally:
        server.close()


def test_openai_scenarios_retry_with_backoff(tmp_path):
    server = FakeChatServer(failures=2)
    try:
        cfg = openai_cfg(tmp_path, server.url, "data.scenario.retries=2")
        source = ScenarioSource(cfg.data.scenario, cfg.data, tmp_path / "out", backoff=0.01)
        scene = Scene("s", (Line("Nox", "Hi."),), None, "s.txt:1")
        assert source.describe(scene) == "A misty riverbank at dusk."
        assert len(server.requests) == 3
    finally:
        server.close()


def test_an_unreachable_endpoint_is_one_clear_error(tmp_path, capsys):
    server = FakeChatServer()
    url = server.url
    server.close()  # nothing listens on that port any more
    cfg = openai_cfg(tmp_path, url, "data.scenario.retries=1", "data.scenario.timeout=2")
    source = ScenarioSource(cfg.data.scenario, cfg.data, tmp_path / "out", backoff=0.01)
    with pytest.raises(DataError) as error:
        source.describe(Scene("s", (Line("Nox", "Hi."),), None, "script.txt:1"))
    message = str(error.value)
    assert message.startswith("data.scenario.base_url: asking") and "script.txt:1" in message
    assert "after 2 attempt(s)" in message


def test_script_lines_end_only_at_line_breaks_and_a_bom_is_not_text(tmp_path):
    (tmp_path / "script.txt").write_text("\ufeff# Scene: A dock at dawn.\nMara: Ready?\n"
                                         "Nox: One\u2028two\x0cthree.\r\nMara: Go.\n", encoding="utf-8")
    cfg = data_cfg(tmp_path)
    accounting = Accounting()
    replies = list(get_mode(cfg).read(accounting))
    assert [(r.scenario, r.text) for r in replies] == [("A dock at dawn.", "One\ntwothree.")]
    assert accounting.posts_changed == {"control_characters": 1}


def test_an_empty_line_of_the_character_gives_no_example_and_is_counted(tmp_path, tokenizer):
    (tmp_path / "script.txt").write_text('Mara: Well?\nNox: ""\nMara: Nothing?\nNox: Nothing.\n')
    manifest = prepare(data_cfg(tmp_path), tokenizer).manifest
    assert manifest["examples"] == 1 and manifest["posts_removed"]["empty"] == 1
    dataset, _ = load_prepared(tmp_path / "out")
    assert dataset[0]["trained"] > 1  # the reply text, not EOS alone


def test_scripts_without_a_line_of_the_character_are_reported(tmp_path, caplog):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "a.txt").write_text("Mara: Who goes there?\nNox: Me.\n")
    (scripts / "b.txt").write_text("Mara: Quiet today.\nIvo: Too quiet.\n")
    cfg = data_cfg(tmp_path, f"data.path={scripts}")
    accounting = Accounting()
    assert [r.text for r in get_mode(cfg).read(accounting)] == ["Me."]
    assert accounting.left_out == {"scripts_without_character": 1} and f"{scripts / 'b.txt'}: no line of" in caplog.text
    with pytest.raises(DataError, match=r"data.character: no line of 'Nox' / 'Old Nox' in .*b.txt \(speakers found: "
                                        r"Mara, Ivo\); check data.character and data.aliases"):
        list(get_mode(data_cfg(tmp_path, f"data.path={scripts / 'b.txt'}")).read(Accounting()))
