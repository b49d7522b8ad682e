"""Config loading: defaults, overrides, and errors that name the dotted key."""

from pathlib import Path

import pytest

from grouprp.config import ConfigError, describe, load_config
from grouprp.cli import main

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_every_shipped_config_loads_and_names_files_that_exist():
    from grouprp.modes import get_mode

    configs = sorted((ROOT / "configs").glob("*.yaml"))
    assert len(configs) >= 4
    for path in configs:
        cfg = load_config(path)
        assert (ROOT / cfg.data.path).exists(), (path, cfg.data.path)
        assert not cfg.train.deepspeed or (ROOT / cfg.train.deepspeed).is_file(), path
        assert all((ROOT / f).is_file() for f in get_mode(cfg).input_files()), path  # cards, sheets, data


def test_reference_recipe_values():
    cfg = load_config(ROOT / "configs" / "lyra_lora.yaml")
    assert (cfg.data.template, cfg.data.min_turns, cfg.data.min_characters, cfg.data.max_characters) == ("lyra", 6, 2, 7)
    assert cfg.model.base == "Sao10K/MN-12B-Lyra-v4" and cfg.model.load_in_8bit
    t = cfg.train
    assert (t.global_batch_size, t.micro_batch_size, t.epochs, t.learning_rate, t.lr_scheduler) == (12, 1, 3, 4e-6, "cosine")
    assert t.deepspeed == "configs/zero2.json" and t.bf16 and t.gradient_checkpointing and not t.packing
    assert cfg.lora.target_modules == "all-linear"


def test_defaults_and_overrides_parsed_as_yaml(tmp_path):
    cfg = load_config(write(tmp_path, "data: {path: x.jsonl}\n"),
                      ["train.learning_rate=1e-5", "data.min_turns=4", "train.report_to=[tensorboard, wandb]",
                       "data.columns.thread_id=thread_href", "eval.split=held_out.jsonl"])
    assert cfg.train.learning_rate == 1e-5 and cfg.data.min_turns == 4
    assert cfg.train.report_to == ["tensorboard", "wandb"]
    assert cfg.data.columns["thread_id"] == "thread_href" and cfg.data.columns["text"] == "text"
    assert cfg.eval.split == "held_out.jsonl"
    assert cfg.data.train_on_names is True and cfg.data.sequence_len == 8192


@pytest.mark.parametrize("override, message", [
    ("data.min_turnz=3", "data.min_turnz: unknown key; did you mean data.min_turns?"),
    ("trian.epochs=3", "trian: unknown key; did you mean train?"),
    ("data.min_turns=many", "data.min_turns: expected an integer, got the string 'many'"),
    ("data.min_turns=2.5", "data.min_turns: expected an integer, got float 2.5"),
    ("data.min_turns=0", "data.min_turns: must be at least 1, got 0"),
    ("train.learning_rate=0", "train.learning_rate: must be greater than 0, got 0"),
    ("lora.dropout=1.5", "lora.dropout: must be at most 1, got 1.5"),
    ("data.template=alpaca", "data.template: must be one of lyra, chatml, alichat; got the string 'alpaca'"),
    ("model.load_in_8bit=yes please", "model.load_in_8bit: expected true or false, got the string 'yes please'"),
    ("data.on_error=ignore", "data.on_error: must be one of raise, skip"),
    ("data.min_characters=9", "data.min_characters: 9 is above data.max_characters (7)"),
    ("data.columns.thread=x", "data.columns.thread: unknown column role"),
    ("data=3", "data: expected a mapping of keys, got int 3"),
    ("noequals", "'noequals': an override is key=value"),
])
def test_config_errors_name_the_key(tmp_path, override, message):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, "data: {path: x.jsonl}\n"), [override])
    assert message in str(error.value)


def test_cli_reports_config_errors_in_one_line_without_traceback(tmp_path, capsys):
    config = write(tmp_path, "data: {path: x.jsonl}\n")
    assert main(["prepare", str(config), "data.min_turnz=3"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: data.min_turnz: unknown key; did you mean data.min_turns?"


def test_config_errors_come_before_any_tokenizer_loads(tmp_path, capsys):
    # the tokenizer path does not exist: a config error must be reported first, not a tokenizer failure
    config = write(tmp_path, "data: {path: x.jsonl}\nmodel: {tokenizer: /nonexistent}\n")
    assert main(["stats", str(config), "train.global_batch_size=-1"]) == 2
    assert "train.global_batch_size: must be at least 1" in capsys.readouterr().err


def test_every_field_has_help():
    rows = describe()
    assert len(rows) > 40
    assert all(help_text for _, help_text, _ in rows), [key for key, h, _ in rows if not h]
