"""Using a trained model: chat in the trained format, eval against the base, merge, and SillyTavern presets.

The runs are tiny random models trained for two steps (behaviour is checked, not quality). Where a test needs the
model to reach a stop string, transformers' own `sequence_bias` steers the real model to write a word and then
the stop token.
"""

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from grouprp.chat import ChatSession, scene_from_file
from grouprp.cli import main
from grouprp.formats.group import SYSTEM_INTRO
from grouprp.inference import Sampling, StopFilter, load_model, load_run, load_tokenizer
from grouprp.presets import sillytavern_presets
from grouprp.schema import DataError, Entry, Turn
from grouprp.sources import read_threads

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
SCENE = {"user": "Ilsa", "characters": [
    {"name": "Ilsa", "sheet": "Age: 24\nJob: courier"},
    {"name": "Corvin", "sheet": {"Age": 31, "Occupation": "Archivist"}},
    {"name": "Pell", "sheet": "Strengths: quick, quiet"}]}


def env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def train(out: Path, config: str, *overrides) -> Path:
    command = [str(BIN / "grouprp"), "train", config, f"output_dir={out}", f"model.base={out.parent / 'base'}",
               "train.deepspeed=null", "train.max_steps=2", "train.report_to=[none]", *overrides]
    result = subprocess.run(command, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def lyra_run(tmp_path_factory):
    return train(tmp_path_factory.mktemp("lyra") / "run", "configs/demo.yaml")


@pytest.fixture(scope="module")
def chatml_run(tmp_path_factory):
    return train(tmp_path_factory.mktemp("chatml") / "run", "configs/demo.yaml", "data.template=chatml")


@pytest.fixture(scope="module")
def alichat_run(tmp_path_factory):
    return train(tmp_path_factory.mktemp("alichat") / "run", "configs/single_character.yaml")


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("scene") / "scene.yaml"
    path.write_text(yaml.safe_dump(SCENE))
    return path


def session(run_dir, scene_file, sampling):
    run = load_run(run_dir)
    scene = scene_from_file(scene_file, run)
    return ChatSession(run, load_model(run), load_tokenizer(run), scene, sampling)


def token(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1, (text, ids)
    return ids[0]


@pytest.mark.parametrize("which", ["lyra", "chatml", "alichat"])
def test_a_chat_turn_ends_at_the_stop_string_which_is_never_shown(which, request, scene_file):
    run_dir = request.getfixturevalue(f"{which}_run")
    run = load_run(run_dir)
    tokenizer = load_tokenizer(run)
    fmt = run.format()
    word = token(tokenizer, " the")
    # the model writes " the", then the format's closing marker (lyra) and its stop string, or EOS (alichat)
    ending = [token(tokenizer, t) for t in (fmt.close, fmt.stop_strings[0])] if fmt.stop_strings else \
        [tokenizer.eos_token_id]
    bias = {(word,): 40.0}
    previous = word
    for step, next_token in enumerate(ending, start=1):
        bias[(previous, next_token)] = 40.0 + 40 * step
        previous = next_token
    chat = session(run_dir, scene_file, Sampling(temperature=0, max_new_tokens=12, sequence_bias=bias))
    streamed = []
    turn = chat.model_turn("Rei" if which == "alichat" else "Corvin", on_text=streamed.append)
    assert turn.text == "the" and "".join(streamed).strip() == "the"
    for stop in (*fmt.stop_strings, fmt.close, tokenizer.eos_token):
        assert not stop or stop not in "".join(streamed)
    assert chat.scene.turns[-1] == Turn(turn.character, "the", "model")


@pytest.mark.parametrize("which", ["lyra", "chatml", "alichat"])
def test_a_scripted_chat_prints_one_json_line_per_model_turn(which, request, scene_file, tmp_path):
    run_dir = request.getfixturevalue(f"{which}_run")
    script = tmp_path / "in.jsonl"
    script.write_text('{"text": "I knock twice."}\n{"command": "/more"}\n{"command": "/retry"}\n'
                      '{"command": "/undo"}\n{"command": "/more"}\n' + (
                          '{"command": "/as Pell"}\n' if which != "alichat" else ""))
    command = [str(BIN / "grouprp"), "chat", str(run_dir), "--script", str(script), "--max-new-tokens", "8",
               "--seed", "3", "--save", str(tmp_path / "saved.jsonl")]
    if which != "alichat":
        command += ["--scene", str(scene_file)]
    result = subprocess.run(command, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    turns = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(turns) == (5 if which != "alichat" else 4)
    assert all(set(t) == {"character", "text", "impersonation", "prefix_removed"} for t in turns)
    fmt = load_run(run_dir).format()
    assert not any(stop in t["text"] for t in turns for stop in (*fmt.stop_strings, fmt.close) if stop)
    if which != "alichat":
        assert turns[-1]["character"] == "Pell"
    assert (tmp_path / "saved.jsonl").is_file()


def test_reply_cleanup_removes_a_repeated_name_and_cuts_impersonation(lyra_run, scene_file):
    run = load_run(lyra_run)
    chat = ChatSession(run, None, None, scene_from_file(scene_file, run), Sampling())
    cleaned = chat._clean(" Corvin: Corvin bowed.\nHe waited.\nIlsa: I nod and leave.", "Corvin")
    assert (cleaned.text, cleaned.prefix_removed, cleaned.impersonation) == ("Corvin bowed.\nHe waited.", True, True)
    chosen = chat._clean("Pell: Quick as ever. *She grins.*", None)
    assert (chosen.character, chosen.text, chosen.impersonation) == ("Pell", "Quick as ever. *She grins.*", False)
    as_user = chat._clean("Ilsa: I answer for myself.", None)
    assert as_user.impersonation and as_user.text == ""
    addressed = chat._clean("Corvin looked at Ilsa: she was late.", "Corvin")  # not at a line start
    assert not addressed.impersonation and addressed.text == "Corvin looked at Ilsa: she was late."
    narrated = chat._clean('Corvin bowed. "After you." Ilsa smiled and went in first.', "Corvin")  # prose, too
    assert narrated.impersonation and narrated.text == 'Corvin bowed. "After you."'


def test_more_gives_consecutive_model_turns_rendered_exactly_as_in_training(lyra_run, scene_file):
    run = load_run(lyra_run)
    chat = session(lyra_run, scene_file, Sampling(temperature=0, max_new_tokens=6))
    chat.post("I knock twice.")
    chat.model_turn("Corvin")
    chat.model_turn(None)
    chat.model_turn("Pell")
    roles = [t.role for t in chat.scene.turns]
    assert roles[-3:] == ["model", "model", "model"]
    entry = Entry("chat", "Ilsa", tuple(chat.scene.turns), chat.scene.bios, cast=tuple(chat.scene.cast))
    trained = run.format().render(entry).text
    prompt = chat._prompt(None).text
    assert prompt == trained[:-len("<|im_end|>")] + "[INST]model\n"


def test_a_saved_conversation_reads_back_as_a_thread(lyra_run, scene_file, tmp_path):
    chat = session(lyra_run, scene_file, Sampling(temperature=0, max_new_tokens=6))
    chat.post("I knock twice.")
    chat.model_turn("Corvin")
    path = chat.save(tmp_path / "saved.jsonl")
    run = load_run(lyra_run)
    (thread,) = list(read_threads(replace(run.cfg.data, path=str(path), format=None)))
    assert thread.user == "Ilsa" and [(p.character, p.text) for p in thread.posts] == [
        (t.character, t.text) for t in chat.scene.turns]
    assert {c.name: c.sheet for c in thread.characters} == {"Ilsa": "Age: 24\nJob: courier",
                                                           "Corvin": {"Age": "31", "Occupation": "Archivist"},
                                                           "Pell": "Strengths: quick, quiet"}


def test_a_sillytavern_group_chat_continued_in_grouprp_chat_and_saved_reads_back(lyra_run, tmp_path):
    from grouprp.chat import scene_from_thread

    chat = ROOT / "data" / "sample" / "sillytavern" / "group chats" / "2025-03-05@21h40m02s300ms.jsonl"
    spec = f"{chat}:{chat.stem}"
    history = scene_from_thread(spec, load_run(lyra_run)).turns
    script = tmp_path / "in.jsonl"
    script.write_text('{"text": "I slide the map across to Wren."}\n{"command": "/as Wren"}\n')
    saved = tmp_path / "saved.jsonl"
    assert main(["chat", str(lyra_run), "--thread", spec, "--script", str(script), "--max-new-tokens", "6",
                 "--seed", "3", "--save", str(saved)]) == 0
    (thread,) = list(read_threads(replace(load_run(lyra_run).cfg.data, path=str(saved), format=None)))
    assert thread.user == "Ash" and len(history) == 11
    posts = [(p.character, p.text) for p in thread.posts]
    assert posts[:11] == [(t.character, t.text) for t in history]
    assert posts[11] == ("Ash", "I slide the map across to Wren.")
    assert {character for character, _ in posts[12:]} <= {"Tobias", "Wren", "Mira"}  # the model's turns


def test_the_stop_filter_holds_back_what_could_become_a_stop_string():
    stops = StopFilter(["[INST]", "<|im_end|>"], close="[/INST]")
    shown = [stops.feed(piece) for piece in ["Hello", " there[", "/IN", "ST]", "[IN", "ST]model\nBo: hi"]]
    assert "".join(shown) == "Hello there" and stops.stopped_by == "[INST]" and stops.finish() == ""
    stops = StopFilter(["<|im_end|>"])
    assert stops.feed("a <|im") == "a " and stops.feed("patient") == "<|impatient" and stops.finish() == ""


def test_eval_writes_base_and_adapter_losses_overall_and_per_character(lyra_run, capsys):
    assert main(["eval", str(lyra_run), "--max-examples", "3", "--generations", "1", "--max-new-tokens", "8",
                 "--seed", "0"]) == 0
    table = capsys.readouterr().out
    report = json.loads((lyra_run / "eval.json").read_text())
    assert report["examples"] >= 1 and "eval split" in report["source"]
    assert report["base_loss"] > 0 and report["adapter_loss"] > 0 and report["base_loss"] != report["adapter_loss"]
    assert report["per_character"] and all({"tokens", "base_loss", "adapter_loss"} <= set(v)
                                           for v in report["per_character"].values())
    assert sum(v["tokens"] for v in report["per_character"].values()) == report["trained_tokens"]
    assert set(report["generations"]) == {"base", "adapter"} and report["generations"]["adapter"]["samples"] == 1
    assert "base loss" in table and f"{report['adapter_loss']:.4f}" in table


def test_the_merged_model_gives_the_adapter_models_logits(lyra_run, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, GenerationConfig

    assert main(["merge", str(lyra_run), "--out", str(tmp_path / "merged")]) == 0
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged"), dtype=torch.float32)
    run = load_run(lyra_run)
    base = AutoModelForCausalLM.from_pretrained(run.base_model, dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base, str(lyra_run))
    ids = torch.tensor([[1, 9, 40, 7, 300, 12, 5]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-4)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    generation = GenerationConfig.from_pretrained(str(tmp_path / "merged"))
    assert generation.stop_strings == ["[INST]", "<|im_end|>"] and generation.temperature == 0.5
    assert (tmp_path / "merged" / "tokenizer.json").is_file() and "## Merged" in (
        tmp_path / "merged" / "README.md").read_text()


def test_merging_into_a_quantized_base_is_refused(lyra_run, tmp_path, capsys):
    base = tmp_path / "quantized"
    base.mkdir()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("adapter_model.safetensors", "adapter_config.json", "config.yaml", "tokenizer.json",
                 "tokenizer_config.json"):
        (run_dir / name).write_bytes((lyra_run / name).read_bytes())
    info = json.loads((lyra_run / "grouprp.json").read_text())
    source = json.loads((Path(info["base_model"]) / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**source, "quantization_config": {"load_in_8bit": True,
                                                                                     "quant_method": "bitsandbytes"}}))
    (run_dir / "grouprp.json").write_text(json.dumps({**info, "base_model": str(base)}))
    assert main(["merge", str(run_dir), "--out", str(tmp_path / "merged")]) == 2
    error = capsys.readouterr().err
    assert "stores its weights quantized (bitsandbytes)" in error and "Traceback" not in error
    assert not (tmp_path / "merged").exists()


def sillytavern_prompt(presets: dict, user: str, persona: str, members: list, messages: list, speaker: str) -> str:
    """A SillyTavern instruct-mode prompt, assembled as its code does (1.18): the story string (Handlebars with
    {{#if}}, the group's joined cards as {{description}}) wrapped in its prefix and suffix; then per message its
    sequence, `Name: text` (names_behavior always) and suffix, with wrap off; then the cue `sequence` + `Name:`."""
    instruct, context, sysprompt, group = (presets[k] for k in ("instruct", "context", "sysprompt", "group"))

    def macros(text: str, char: str = "") -> str:
        return text.replace("{{user}}", user).replace("{{char}}", char)

    joined = "\n".join(macros(group["generation_mode_join_prefix"], name) + description.strip()
                       + macros(group["generation_mode_join_suffix"], name) for name, description in members
                       if description.strip())
    values = {"system": macros(sysprompt["content"]), "user": user, "persona": persona, "description": joined}
    story = context["story_string"]
    story = re.sub(r"\{\{#if (\w+)\}\}(.*?)\{\{/if\}\}", lambda m: m.group(2) if values.get(m.group(1)) else "",
                   story, flags=re.S)
    story = re.sub(r"\{\{(\w+)\}\}", lambda m: values.get(m.group(1), m.group(0)), story).lstrip("\n")
    assert not instruct["wrap"]
    text = instruct["story_string_prefix"] + story + instruct["story_string_suffix"]
    for name, is_user, mes in messages:
        kind = "input" if is_user else "output"
        text += instruct[f"{kind}_sequence"] + f"{name}: {mes}" + instruct[f"{kind}_suffix"]
    return text + instruct["output_sequence"] + f"{speaker}:"


@pytest.mark.parametrize("which", ["lyra", "chatml"])
def test_sillytavern_presets_reproduce_the_trained_format_character_for_character(which, request, scene_file,
                                                                                  tmp_path, capsys):
    run_dir = request.getfixturevalue(f"{which}_run")
    run = load_run(run_dir)
    fmt = run.format()
    scene = scene_from_file(scene_file, run)
    turns = (Turn("Ilsa", "I knock twice.", "user"), Turn("Corvin", '"Open," he said.', "model"),
             Turn("Pell", "Pell waved.", "model"), Turn("Ilsa", "Thanks.", "user"))
    entry = Entry("chat", "Ilsa", turns, scene.bios, cast=tuple(scene.cast))
    assert main(["export-preset", str(run_dir), "--to", "sillytavern", "--out", str(tmp_path / "st")]) == 0
    written = {p.name: json.loads(p.read_text()) for p in (tmp_path / "st").glob("*.json")}
    assert set(written) == {"instruct.json", "context.json", "sysprompt.json", "master-import.json",
                            "group-settings.json"}
    assert set(written["master-import.json"]) == {"instruct", "context", "sysprompt"}
    for section, required in (("instruct", {"name", "input_sequence", "output_sequence"}),
                              ("context", {"name", "story_string", "story_string_position"}),
                              ("sysprompt", {"name", "content"})):
        assert required <= set(written["master-import.json"][section]) and written[f"{section}.json"] == \
            written["master-import.json"][section]
    presets = {**written["master-import.json"], "group": written["group-settings.json"]}
    members = [(name, scene.bios.get(name, "")) for name in scene.cast if name != "Ilsa"]
    messages = [(t.character, t.role == "user", t.text) for t in turns]
    assembled = sillytavern_prompt(presets, "Ilsa", scene.bios["Ilsa"], members, messages, "Corvin")
    assert assembled == fmt.prompt(entry, "Corvin").text
    stops = presets["instruct"]["stop_sequence"].split("\n")
    assert set(fmt.stop_strings) <= set(stops) and set(stops) <= {*fmt.stop_strings, fmt.close}
    assert presets["sysprompt"]["content"] == SYSTEM_INTRO.format(user="{{user}}")
    assert capsys.readouterr().out.count(str(tmp_path / "st")) == 6


def test_the_single_character_format_has_no_preset_and_says_so(alichat_run, tmp_path, capsys):
    assert main(["export-preset", str(alichat_run), "--out", str(tmp_path / "st")]) == 2
    assert "the alichat format has no SillyTavern equivalent yet" in capsys.readouterr().err
    with pytest.raises(DataError, match="no SillyTavern equivalent"):
        sillytavern_presets(load_run(alichat_run).format(), "x")


def test_the_model_card_says_how_to_prompt(lyra_run, alichat_run):
    card = (lyra_run / "README.md").read_text()
    assert "## How to prompt" in card and "Stop strings: `[INST]`, `<|im_end|>`" in card
    assert "[INST]user\nIlsa: *She knocks twice.* Anyone home?[/INST][INST]model\nCorvin:" in card
    single = (alichat_run / "README.md").read_text()
    assert "### Response:\nRei:" in single and "single-character roleplay: every reply of Rei" in single


@pytest.mark.parametrize("case, message", [
    ("no_info", "grouprp.json: not found; training writes it beside the adapter when it finishes"),
    ("no_adapter", "adapter_model.safetensors: no adapter in this run folder"),
    ("scene_field", "scene.yaml: unknown field 'location'; a scene has characters, scenario, title, user"),
    ("unknown_character", "/as Nobody: not in the scene; the model plays Corvin, Pell"),
])
def test_bad_input_is_one_line_naming_the_file_or_name(case, message, lyra_run, scene_file, tmp_path, capsys):
    run_dir, scene, script = lyra_run, scene_file, tmp_path / "in.jsonl"
    script.write_text('{"command": "/as Nobody"}\n' if case == "unknown_character" else '{"text": "hi"}\n')
    if case in ("no_info", "no_adapter"):
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        for name in ("adapter_config.json", "config.yaml", "grouprp.json", "adapter_model.safetensors"):
            if not (case == "no_info" and name == "grouprp.json") and not (
                    case == "no_adapter" and name == "adapter_model.safetensors"):
                (run_dir / name).write_bytes((lyra_run / name).read_bytes())
    if case == "scene_field":
        scene = tmp_path / "scene.yaml"
        scene.write_text(yaml.safe_dump({**SCENE, "location": "an inn"}))
    assert main(["chat", str(run_dir), "--scene", str(scene), "--script", str(script)]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    if case == "unknown_character":
        assert f"{script}:1: /as Nobody" in error
