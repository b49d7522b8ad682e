"""`prepare`, `preview` and `stats` end to end on small data, with the bundled tokenizer."""

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, TOKENIZER, make_thread, write_jsonl
from grouprp import prepare as prepare_module
from grouprp.cli import main
from grouprp.config import load_config
from grouprp.prepare import data_fingerprint, load_prepared, load_tokenizer, prepare
from grouprp.tokenize import IGNORE_INDEX

SPEAKERS = ("Ann", "Bo", "Ann", "Cy", "Ann", "Bo", "Cy", "Bo")


def make_config(tmp_path, data, *overrides, name="c.yaml"):
    path = tmp_path / name
    path.write_text(f"output_dir: {tmp_path / 'out'}\ndata: {{path: {data}, num_proc: 1}}\n"
                    f"model: {{tokenizer: {TOKENIZER}}}\n")
    return load_config(path, list(overrides)), path


@pytest.fixture
def threads_file(tmp_path):
    rows = [make_thread(f"t{i}", SPEAKERS) for i in range(5)]
    rows.append(make_thread("short", SPEAKERS[:4]))                              # too_few_turns
    rows.append(make_thread("solo", ("Ann",) * 7))                               # too_few_turns after trailing user
    rows.append(make_thread("lonely", ("Bo",) * 7, user="Zed"))                  # too_few_characters
    rows.append(make_thread("crowd", ("Ann", "B", "C", "D", "E", "F", "G", "H")))  # too_many_characters
    rows.append(make_thread("ooc", SPEAKERS, ))
    rows[-1]["posts"][1]["text"] = "OOC: gotta go"
    rows[-1]["posts"][2]["text"] = "[img]x.png[/img]"
    return write_jsonl(tmp_path / "threads.jsonl", rows)


def test_manifest_accounts_for_every_entry_and_post(tmp_path, threads_file, tokenizer):
    cfg, _ = make_config(tmp_path, threads_file)
    result = prepare(cfg, tokenizer)
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m == result.manifest
    assert m["entries_in"] == 10 and m["entries_kept"] == 6 and m["examples"] == 6
    assert m["dropped"] == {"too_few_turns": 2, "too_few_characters": 1, "too_many_characters": 1, "malformed": 0,
                            "too_long": 0, "duplicates": 0, "max_genre_share": 0}
    # "solo" loses all 7 posts as trailing user posts, "ooc" one OOC and one empty post
    assert m["posts_removed"] == {"empty": 1, "ooc": 1, "trailing_user": 7, "impersonation": 0, "low_effort": 0,
                                  "duplicates": 0}
    dataset, _ = load_prepared(tmp_path / "out")
    assert m["tokens"] == sum(len(ids) for ids in dataset["input_ids"])
    assert m["trained_tokens"] == sum(sum(1 for x in labels if x != IGNORE_INDEX) for labels in dataset["labels"])
    assert 0 < m["stats"]["trained_share"] < 1
    assert (m["stats"]["turns_per_example"]["min"], m["stats"]["turns_per_example"]["max"]) == (6, 8)


def test_dataset_rows_are_the_encoding_of_the_rendered_text(tmp_path, threads_file, tokenizer):
    cfg, _ = make_config(tmp_path, threads_file)
    prepare(cfg, tokenizer)
    dataset, _ = load_prepared(tmp_path / "out")
    row = dataset[0]
    text = tokenizer.decode(row["input_ids"][1:], skip_special_tokens=False)
    assert text.startswith("[INST]system\nYou are involved") and text.endswith("[/INST]<|im_end|>")
    trained = tokenizer.decode([t for t, l in zip(row["input_ids"], row["labels"]) if l != IGNORE_INDEX],
                               skip_special_tokens=False)
    assert trained == "Bo: Bo says line 1.[/INST]Cy: Cy says line 3.[/INST]Bo: Bo says line 5.[/INST]" \
                      "Cy: Cy says line 6.[/INST]Bo: Bo says line 7.[/INST]<|im_end|>"


def test_rerun_reuses_the_cache_and_any_change_rebuilds(tmp_path, threads_file, tokenizer, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="grouprp")
    cfg, _ = make_config(tmp_path, threads_file)
    assert not prepare(cfg, tokenizer).reused
    assert prepare(cfg, tokenizer).reused
    assert "reusing the prepared dataset" in caplog.text

    cfg2, _ = make_config(tmp_path, threads_file, "data.min_turns=3")
    assert not prepare(cfg2, tokenizer).reused                       # config changed
    assert prepare(cfg2, tokenizer).reused
    with open(threads_file, "a") as handle:
        handle.write(json.dumps(make_thread("new", SPEAKERS)) + "\n")
    assert not prepare(cfg2, tokenizer).reused                       # data changed
    assert prepare(cfg2, tokenizer).manifest["entries_in"] == 11

    other = tmp_path / "tok"
    shutil.copytree(TOKENIZER, other)
    from transformers import AutoTokenizer
    changed = AutoTokenizer.from_pretrained(str(other))
    changed.add_tokens(["Bo says"])
    assert data_fingerprint(cfg2, changed) != data_fingerprint(cfg2, tokenizer)  # tokenizer changed

    package = tmp_path / "pkg"
    shutil.copytree(Path(prepare_module.__file__).parent, package)
    before = data_fingerprint(cfg2, tokenizer)
    monkeypatch.setattr(prepare_module, "__file__", str(package / "prepare.py"))
    assert data_fingerprint(cfg2, tokenizer) == before
    group = package / "formats" / "group.py"
    group.write_text(group.read_text().replace("The roleplay begins now.", "The roleplay starts now."))
    assert data_fingerprint(cfg2, tokenizer) != before              # format code changed


def test_long_threads_are_windowed_within_sequence_len(tmp_path, tokenizer):
    long_thread = make_thread("long", ("Ann", "Bo", "Cy", "Bo") * 12)
    for post in long_thread["posts"]:
        post["text"] = post["text"] + " The rain kept falling on the old tin roof of the inn." * 3
    huge = make_thread("huge", ("Ann", "Bo") * 4)
    for post in huge["posts"]:
        post["text"] = "An enormous post that rambles on and on. " * 60
    path = write_jsonl(tmp_path / "threads.jsonl", [long_thread, huge])
    cfg, _ = make_config(tmp_path, path, "data.sequence_len=512", "data.min_turns=4", "data.window_context=false")
    m = prepare(cfg, tokenizer).manifest
    dataset, _ = load_prepared(tmp_path / "out")
    assert m["entries_kept"] == 1 and m["dropped"]["too_long"] == 1
    assert m["examples"] > 2 and all(n <= 512 for n in dataset["length"])
    # only a short tail can be lost (a last window under min_turns); every other post is in exactly one window
    assert 48 - 4 < sum(dataset["turns"]) <= 48
    assert [i.split("#")[0] for i in dataset["id"]] == ["long"] * m["examples"]
    # windows are consecutive whole posts: together they hold every post of the thread but the dropped windows
    texts = [tokenizer.decode(ids, skip_special_tokens=False) for ids in dataset["input_ids"]]
    first_posts = [t.split("[INST]user\n", 1)[1].split(":", 1)[0] for t in texts]
    assert set(first_posts) == {"Ann"}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(shapes=st.lists(st.tuples(st.lists(st.sampled_from(["Ann", "Bo", "Cy", "Di"]), max_size=12),
                                 st.sampled_from(["ok", "ooc", "empty", "broken"])), min_size=1, max_size=8))
def test_every_entry_is_kept_or_dropped_once(tmp_path_factory, tokenizer, shapes):
    tmp_path = tmp_path_factory.mktemp("prop")
    lines = []
    for number, (speakers, twist) in enumerate(shapes):
        thread = make_thread(f"g{number}", speakers)
        if twist == "ooc" and speakers:
            thread["posts"][0]["text"] = "((OOC))"
        if twist == "empty" and speakers:
            thread["posts"][-1]["text"] = "   "
        lines.append('{"id": "broken", "posts": [' if twist == "broken" else json.dumps(thread))
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    cfg, _ = make_config(tmp_path, path, "data.on_error=skip", "data.min_turns=2", "data.sequence_len=128")
    m = prepare(cfg, tokenizer).manifest
    assert m["entries_in"] == len(shapes)
    assert m["entries_in"] == m["entries_kept"] + sum(m["dropped"].values())
    assert m["dropped"]["malformed"] == sum(1 for _, twist in shapes if twist == "broken")


def test_preview_json_needs_no_tokenizer_and_says_it_cannot_window(tmp_path, threads_file, capsys):
    _, config_path = make_config(tmp_path, threads_file, name="p.yaml")
    assert main(["preview", str(config_path), "--json", "--n", "2", "model.tokenizer=/nonexistent/tokenizer"]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 2
    first = rows[0]
    assert [first["text"][s:e] for s, e in first["trained"]] == [
        "Bo: Bo says line 1.[/INST]", "Cy: Cy says line 3.[/INST]", "Bo: Bo says line 5.[/INST]",
        "Cy: Cy says line 6.[/INST]", "Bo: Bo says line 7.[/INST]<|im_end|>"]
    assert "long threads are shown whole, not cut into sequence_len windows" in err


def test_stats_prints_accounting_lengths_and_trained_share(tmp_path, threads_file, capsys):
    _, config_path = make_config(tmp_path, threads_file, name="s.yaml")
    assert main(["stats", str(config_path)]) == 0
    out = capsys.readouterr().out
    assert "10 in, 6 kept" in out
    assert "too_few_turns 2" in out and "ooc 1" in out and "trailing_user 7" in out
    assert "tokens/example:" in out and "p90" in out and "trained" in out and "%" in out


def test_eval_split_as_a_path_prepares_held_out_data_of_its_own(tmp_path, threads_file, tokenizer):
    from grouprp.train import split_for_eval

    held_out = write_jsonl(tmp_path / "held_out.jsonl", [make_thread(f"h{i}", SPEAKERS) for i in range(3)])
    cfg, _ = make_config(tmp_path, threads_file, f"eval.split={held_out}")
    prepare(cfg, tokenizer)
    dataset, _ = load_prepared(tmp_path / "out")
    train, evaluation = split_for_eval(cfg, dataset, tokenizer)
    assert len(train) == len(dataset) == 6 and len(evaluation) == 3
    assert json.loads((tmp_path / "out" / "eval_data" / "manifest.json").read_text())["entries_in"] == 3
    assert train.column_names == ["input_ids", "labels"]


def test_a_file_of_only_malformed_records_prepares_no_examples_and_counts_them(tmp_path, tokenizer):
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": "a", "posts": [\n{"id": "b"}\n')
    cfg, _ = make_config(tmp_path, path, "data.on_error=skip")
    m = prepare(cfg, tokenizer).manifest
    assert (m["entries_in"], m["examples"], m["dropped"]["malformed"]) == (2, 0, 2)
    assert len(load_prepared(tmp_path / "out")[0]) == 0


@pytest.mark.parametrize("damage", ["manifest_removed", "arrow_truncated", "arrow_removed"])
def test_a_dataset_left_broken_by_a_kill_is_rebuilt_not_reused(tmp_path, threads_file, tokenizer, caplog, damage):
    caplog.set_level(logging.INFO, logger="grouprp")
    cfg, _ = make_config(tmp_path, threads_file)
    prepare(cfg, tokenizer)
    intact = load_prepared(tmp_path / "out")[0].to_dict()
    target = tmp_path / "out" / "dataset"
    arrow = next(target.glob("*.arrow"))
    if damage == "manifest_removed":
        (target / "manifest.json").unlink()
    elif damage == "arrow_truncated":
        arrow.write_bytes(arrow.read_bytes()[:200])
    else:
        arrow.unlink()
    result = prepare(cfg, tokenizer)
    assert not result.reused and "rebuilding the dataset: " in caplog.text
    assert load_prepared(tmp_path / "out")[0].to_dict() == intact
    assert prepare(cfg, tokenizer).reused


def test_leftovers_of_killed_prepares_are_removed_and_a_running_ones_kept(tmp_path, threads_file, tokenizer):
    cfg, _ = make_config(tmp_path, threads_file)
    dead = tmp_path / "out" / ".prepare-999999999-abcd"  # no such process
    alive = tmp_path / "out" / f".prepare-{os.getppid()}-efgh"  # the test runner's parent is running
    old = tmp_path / "out" / ".dataset-old-999999999"
    for folder in (dead, alive, old):
        folder.mkdir(parents=True)
    prepare(cfg, tokenizer)
    assert not dead.exists() and not old.exists() and alive.exists()


def test_control_characters_never_reach_the_dataset_and_are_counted(tmp_path, tokenizer):
    thread = make_thread("ctl", SPEAKERS)
    thread["posts"][1]["text"] = "Bo\x00 says line 1.\x07"
    thread["posts"][3]["character"] = "Cy\ufeff"
    path = tmp_path / "t.jsonl"
    line = json.dumps(thread).replace("line 5.", "line 5.\\ud800")  # a broken escape, as scrapers write them
    path.write_text(line + "\n")
    cfg, _ = make_config(tmp_path, path)
    manifest = prepare(cfg, tokenizer).manifest
    assert manifest["posts_changed"] == {"control_characters": 2, "ooc": 0, "impersonation": 0}
    dataset, _ = load_prepared(tmp_path / "out")
    text = tokenizer.decode(dataset[0]["input_ids"], skip_special_tokens=False)
    assert "Bo: Bo says line 1.[/INST]" in text and "Cy: Cy says line 3." in text and "line 5.[/INST]" in text
    assert not any(ord(c) < 32 and c not in "\n\t" for c in text)


MULTI_BYTE_WORDS = ["Zo\u00eb", "na\u00efve", "caf\u00e9", "\u2014", "\u201cRun,\u201d", "\u65e5\u672c", "\U0001f642",
                    "\u00a0", "  ", "\n", "the", "lantern", "*nods*", "O\u2019Hara"]


@pytest.mark.parametrize("config", ["demo.yaml", "single_character.yaml", "multi-byte threads"])
@pytest.mark.parametrize("which", ["bundled", "nemo"])
def test_the_prepared_data_is_the_same_whether_offsets_come_from_the_tokenizer_or_token_bytes(
        tmp_path, monkeypatch, request, config, which):
    """Prepared with offsets rebuilt from token bytes, and again with every offset asked of the tokenizer (the
    path of tokenizers that are not byte-level): the same rows, tokens and labels. On the shipped sample data and
    on threads full of multi-byte characters, windowed."""
    import random

    from grouprp import tokenize

    path = TOKENIZER if which == "bundled" else request.getfixturevalue("nemo_tokenizer_path")
    overrides = [f"model.tokenizer={path}", "data.num_proc=1", "eval.split=0",
                 "data.sequence_len=1024"]  # so that threads window
    if config == "multi-byte threads":
        rng = random.Random(7)
        rows = [make_thread(f"m{n}", SPEAKERS * 4) for n in range(12)]
        for row in rows:
            for post in row["posts"]:
                post["text"] = " ".join(rng.choice(MULTI_BYTE_WORDS) for _ in range(rng.randint(3, 40))) + "."
        overrides.append(f"data.path={write_jsonl(tmp_path / 'threads.jsonl', rows)}")
        config = "demo.yaml"
    datasets = []
    for byte_level in (tokenize.byte_level, lambda backend: False):
        monkeypatch.setattr(tokenize, "byte_level", byte_level)
        cfg = load_config(ROOT / "configs" / config, [f"output_dir={tmp_path / str(len(datasets))}", *overrides])
        prepare(cfg, load_tokenizer(cfg))
        datasets.append(load_prepared(cfg.output_dir)[0].to_dict())
    fast, asked = datasets
    assert len(fast["input_ids"]) > 0 and any(label != IGNORE_INDEX for row in fast["labels"] for label in row)
    assert config == "single_character.yaml" or any("#w" in key for key in fast["id"])
    assert fast == asked
