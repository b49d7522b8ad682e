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
    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text("")
    cfg = load_config(write(tmp_path, "data: {path: x.jsonl}\n"),
                      ["train.learning_rate=1e-5", "data.min_turns=4", "train.report_to=[tensorboard, wandb]",
                       "data.columns.thread_id=thread_href", f"eval.split={held_out}"])
    assert cfg.train.learning_rate == 1e-5 and cfg.data.min_turns == 4
    assert cfg.train.report_to == ["tensorboard", "wandb"]
    assert cfg.data.columns["thread_id"] == "thread_href" and cfg.data.columns["text"] == "text"
    assert cfg.eval.split == str(held_out)
    assert cfg.data.train_on_names is True and cfg.data.sequence_len == 8192


def test_quality_detectors_take_a_mode_string_or_a_mapping_and_a_bare_off(tmp_path):
    cfg = load_config(write(tmp_path, "data:\n  path: x.jsonl\n  quality:\n    ooc: trim\n    impersonation: off\n"
                                      "    duplicates: {mode: drop, threshold: 0.9}\n"),
                      ["data.quality.low_effort=drop", "data.quality.max_genre_share=0.5"])
    q = cfg.data.quality
    assert (q.ooc.mode, q.impersonation.mode, q.duplicates.mode, q.duplicates.threshold) == ("trim", "off", "drop", 0.9)
    assert (q.low_effort.mode, q.low_effort.min_words, q.max_genre_share) == ("drop", 6, 0.5)
    defaults = load_config(write(tmp_path, "data: {path: x.jsonl}\n"), []).data.quality
    assert {defaults.ooc.mode, defaults.impersonation.mode, defaults.duplicates.mode, defaults.low_effort.mode} == {
        "flag"} and defaults.max_genre_share is None  # nothing changes unless asked


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
    ("data.quality.ooc=cut", "data.quality.ooc.mode: must be one of off, flag, trim, drop; got the string 'cut'"),
    ("data.quality.duplicates=trim", "data.quality.duplicates.mode: must be one of off, flag, drop"),
    ("data.quality.duplicates.threshold=0", "data.quality.duplicates.threshold: must be greater than 0, got 0"),
    ("data.quality.max_genre_share=1.5", "data.quality.max_genre_share: must be at most 1, got 1.5"),
    ("data.quality.genres=nowhere.yaml", "data.quality.genres: nowhere.yaml not found"),
    ("data.quality.low_effort.min_wordz=3", "did you mean data.quality.low_effort.min_words?"),
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


@pytest.mark.parametrize("override, message", [
    ("train.epochs=.nan", "train.epochs: must be a finite number, got nan"),
    ("train.learning_rate=.inf", "train.learning_rate: must be a finite number, got inf"),
    ("lora.dropout=.nan", "lora.dropout: must be a finite number, got nan"),
    ("train.warmup_ratio=-.inf", "train.warmup_ratio: must be a finite number, got -inf"),
    ("output_dir=", "output_dir: required"),
    ("data.sheets=/nonexistent/sheets.jsonl", "data.sheets: /nonexistent/sheets.jsonl not found"),
    ("data.card=/nonexistent/card.yaml", "data.card: /nonexistent/card.yaml not found"),
    ("eval.split=/nonexistent/held_out.jsonl", "eval.split: /nonexistent/held_out.jsonl not found"),
    ("train.deepspeed=/nonexistent/zero2.json", "train.deepspeed: /nonexistent/zero2.json not found"),
])
def test_garbage_values_and_missing_files_are_config_errors(tmp_path, override, message):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, "data: {path: x.jsonl}\n"), [override])
    assert message in str(error.value)


def test_an_output_dir_that_is_a_file_and_a_config_that_is_not_utf8(tmp_path):
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(ConfigError, match="output_dir: .*taken is a file; name a folder"):
        load_config(write(tmp_path, "data: {path: x.jsonl}\n"), [f"output_dir={tmp_path / 'taken'}"])
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"data: {path: x.jsonl}\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin.yaml:2: not UTF-8 text; re-save the config as UTF-8"):
        load_config(latin)
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbfdata: {path: x.jsonl}\n")
    assert load_config(bom).data.path == "x.jsonl"


def training_config(tmp_path, *overrides):
    return load_config(ROOT / "configs" / "demo.yaml", [f"output_dir={tmp_path / 'out'}",
                                                        f"model.base={tmp_path / 'base'}", *overrides])


@pytest.mark.parametrize("override, message", [
    ("train.lr_scheduler=cosinus", "train.lr_scheduler: unknown scheduler 'cosinus'; one of linear, cosine"),
    ("model.attn_implementation=fast", "model.attn_implementation: unknown 'fast'; one of eager"),
    ("model.attn_implementation=flash_attention_2", "model.attn_implementation: flash_attention_2 needs a CUDA GPU"),
    ("lora.target_modules=[q_proj,q_projj]", "lora.target_modules: 'q_projj' matches no module of "
                                              "MistralForCausalLM; its linear layers are down_proj, gate_proj"),
    ("lora.target_modules=attention\\..*", "lora.target_modules: 'attention\\\\..*' matches no module"),
    ("model.random_init=null", "base does not exist (a local model folder, or a HF model id"),
    ("model.base=nobody/no-such-model model.random_init=null", "model.base: nobody/no-such-model is not a local "
                                                               "folder and not in the Hugging Face cache, and "
                                                               "HF_HUB_OFFLINE is set"),
    ("train.resume=configs", "train.resume: configs has no completion marker"),
])
def test_training_settings_are_checked_before_anything_loads(tmp_path, override, message, monkeypatch):
    from grouprp.train import check_before_loading

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as error:
        check_before_loading(training_config(tmp_path, *override.split(" ")))
    assert message in str(error.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "base").exists()


def test_a_base_folder_without_config_and_a_broken_deepspeed_json(tmp_path, monkeypatch):
    from grouprp.train import check_before_loading

    (tmp_path / "base").mkdir()
    with pytest.raises(ConfigError, match="model.base: .*base has no config.json"):
        check_before_loading(training_config(tmp_path, "model.random_init=null"))
    for text, message in (('{"zero_optimization": {"stage": 2,}}', r"is not valid JSON \(Expecting property name "
                                                                     r"enclosed in double quotes at line 1"),
                          ('{"zero_optimization": {"stage": 5}}', "zero_optimization.stage must be 0, 1, 2 or 3, "
                                                                  "got 5"),
                          ('{"train_micro_batch_size_per_gpu": 2}', "sets train_micro_batch_size_per_gpu 2 but "
                                                                    "train.micro_batch_size is 1")):
        (tmp_path / "ds.json").write_text(text)
        with pytest.raises(ConfigError, match=f"train.deepspeed: .*ds.json:? {message}"):
            check_before_loading(training_config(tmp_path, f"train.deepspeed={tmp_path / 'ds.json'}"))
    check_before_loading(training_config(tmp_path, "train.deepspeed=configs/zero2.json"))  # the shipped one is fine
