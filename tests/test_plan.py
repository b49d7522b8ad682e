"""The memory planner: GPU names, the breakdown and verdict, offline model configs, the warning `train` gives, and
its figures against measured training steps (benchmarks/plan_check.py)."""

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from grouprp import plan as planner
from grouprp.cli import main
from grouprp.config import ConfigError, load_config
from grouprp.plan import GIB, USABLE, cheapest_change, estimate, largest_sequence_len, parse_gpus

ROOT = Path(__file__).resolve().parent.parent
# Mistral-Nemo 12B's config.json, as published (the fields the planner reads)
NEMO = {"model_type": "mistral", "architectures": ["MistralForCausalLM"], "hidden_size": 5120,
        "intermediate_size": 14336, "num_hidden_layers": 40, "num_attention_heads": 32, "num_key_value_heads": 8,
        "head_dim": 128, "vocab_size": 131072, "tie_word_embeddings": False, "max_position_embeddings": 1024000}


@pytest.fixture
def nemo(tmp_path):
    folder = tmp_path / "nemo"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(NEMO))
    return folder


def lyra(nemo, *overrides):
    return load_config(ROOT / "configs" / "lyra_lora.yaml", [f"model.base={nemo}", *overrides])


def test_gpu_names_with_a_count_or_a_bare_size():
    assert parse_gpus("2xA100-40GB") == (2, "A100-40GB", 40e9)
    assert parse_gpus("rtx4090-24gb") == (1, "RTX4090-24GB", 24e9)
    assert parse_gpus("4 x H100-80GB")[:2] == (4, "H100-80GB")
    assert parse_gpus("8x80GB") == (8, "80GB", 80e9)
    for name in ("A100-80GB", "L40S-48GB", "RTX3090-24GB"):
        assert parse_gpus(f"1x{name}")[1] == name
    with pytest.raises(ConfigError, match="--gpus '2xB300'.*A100-40GB"):
        parse_gpus("2xB300")


def test_the_reference_recipe_on_two_a100_40gb(nemo, capsys):
    assert main(["plan", str(ROOT / "configs" / "lyra_lora.yaml"), f"model.base={nemo}", "--gpus",
                 "2xA100-40GB"]) == 0
    out = capsys.readouterr().out
    lines = {line.split("  ")[1].strip(): line for line in out.splitlines() if line.startswith("  ")}
    # the int8 linear weights: the parameters of the seven projections of 40 layers, a byte each, and one fp32
    # scale per output row, counted here from the shape independently of the planner
    per_layer = (5120 * 4096 + 2 * 5120 * 1024 + 4096 * 5120 + 3 * 5120 * 14336)
    rows = 4096 + 2 * 1024 + 5120 + 2 * 14336 + 5120
    assert f"{(40 * per_layer + 4 * 40 * rows) / GIB:8.2f} GiB" in lines["linear weights, int8"]
    # embeddings and lm_head (2 x 131,072 x 5,120) and 81 norms, in bf16 under DeepSpeed
    assert f"{(2 * 131072 * 5120 + 81 * 5120) * 2 / GIB:8.2f} GiB" in lines["embeddings, lm_head, norms"]
    assert "ZeRO-2 over 2 rank(s)" in lines["LoRA weights, gradients, AdamW states"]
    assert "8,192 tokens per micro-batch" in lines["activations"]
    assert "logits of 1,024 positions x 131,072" in lines["loss (chunked)"]
    # the figures docs/benchmarks.md and the README quote
    assert "peak per GPU: 22.6 GiB" in out
    assert "fits on 2x A100-40GB" in out and "does not fit" not in out
    assert "largest sequence_len that fits: 20,992" in out


def test_a_verdict_that_does_not_fit_names_a_change_that_does(nemo, capsys):
    cfg = lyra(nemo, "train.gradient_checkpointing=false", "data.sequence_len=16384")
    assert main(["plan", str(ROOT / "configs" / "lyra_lora.yaml"), f"model.base={nemo}",
                 "train.gradient_checkpointing=false", "data.sequence_len=16384", "--gpus", "2xA100-40GB"]) == 0
    out = capsys.readouterr().out
    assert "does not fit on 2x A100-40GB" in out
    assert "cheapest change that fits: train.gradient_checkpointing=true" in out
    shape, budget = planner.model_shape(cfg), 40e9 * USABLE
    assert estimate(cfg, shape, 2).peak > budget
    assert estimate(replace(cfg, train=replace(cfg.train, gradient_checkpointing=True)), shape, 2).peak <= budget
    # with checkpointing already on, the next change is less context: the longest that fits, and no longer
    on = replace(cfg, train=replace(cfg.train, gradient_checkpointing=True))
    small = 20e9 * USABLE
    change = cheapest_change(on, shape, 2, small)
    longest = largest_sequence_len(on, shape, 2, small)
    assert change.startswith(f"data.sequence_len={longest} ")
    at = lambda n: estimate(replace(on, data=replace(on.data, sequence_len=n)), shape, 2).peak  # noqa: E731
    assert at(longest) <= small < at(longest + 256)
    # and nothing fits a card smaller than the weights
    assert cheapest_change(on, shape, 2, 8e9) is None and largest_sequence_len(on, shape, 2, 8e9) == 0


def test_what_each_setting_saves_goes_the_right_way(nemo):
    cfg = lyra(nemo)
    shape = planner.model_shape(cfg)
    peak = lambda c, world=2: estimate(c, shape, world).peak  # noqa: E731
    base = peak(cfg)
    assert f"{base / GIB:.1f}" == "22.6"
    assert f"{peak(replace(cfg, train=replace(cfg.train, gradient_checkpointing=False))) / GIB:.0f}" == "111"
    assert f"{peak(replace(cfg, train=replace(cfg.train, loss='full'))) / GIB:.1f}" == "31.7"  # docs quote these
    assert peak(replace(cfg, model=replace(cfg.model, load_in_8bit=False))) > base + 10 * GIB  # 16-bit weights
    assert peak(cfg, world=1) > base  # the adapter's states are not shared
    half = peak(replace(cfg, data=replace(cfg.data, sequence_len=4096)))
    assert half < base


def test_the_model_config_comes_from_the_local_hugging_face_cache_and_nothing_is_downloaded(tmp_path, monkeypatch,
                                                                                          capsys):
    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--Nemo-Like" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(NEMO))
    (cache / "models--someone--Nemo-Like" / "refs").mkdir()
    (cache / "models--someone--Nemo-Like" / "refs" / "main").write_text("0123abc")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = ROOT / "configs" / "lyra_lora.yaml"
    assert main(["plan", str(config), "model.base=someone/Nemo-Like", "--gpus", "2xA100-80GB"]) == 0
    assert "40 layers, hidden 5,120, vocabulary 131,072" in capsys.readouterr().out
    assert main(["plan", str(config), "model.base=someone/Not-Here"]) == 2
    assert "not in the Hugging Face cache" in capsys.readouterr().err


def test_without_gpus_named_or_present_there_is_a_peak_but_no_verdict(nemo, capsys, monkeypatch):
    monkeypatch.setattr(planner, "local_gpus", lambda: (0, None, None))
    assert main(["plan", str(ROOT / "configs" / "lyra_lora.yaml"), f"model.base={nemo}"]) == 0
    out = capsys.readouterr().out
    assert "peak per GPU:" in out and "--gpus 2xA100-40GB" in out and "fits" not in out


def test_train_warns_before_loading_when_the_plan_does_not_fit_and_goes_on(nemo, monkeypatch, caplog):
    import grouprp.train as train

    started = []
    monkeypatch.setattr(train, "_run", lambda cfg, *rest: started.append(cfg))  # what would load the model
    cfg = lyra(nemo, "train.deepspeed=null", "train.global_batch_size=1")
    monkeypatch.setattr(planner, "local_gpus", lambda: (1, "NVIDIA L4", 24e9))
    with caplog.at_level(logging.WARNING, logger="grouprp"):
        train.run(cfg)
    warned = [r.getMessage() for r in caplog.records if r.getMessage().startswith("memory:")]
    assert len(warned) == 1 and "more than the 21.2 GiB usable on NVIDIA L4" in warned[0]
    assert "cheapest change that fits" in warned[0] and len(started) == 1  # a warning, not a stop
    caplog.clear()
    monkeypatch.setattr(planner, "local_gpus", lambda: (1, "NVIDIA H100 80GB HBM3", 80e9))
    with caplog.at_level(logging.WARNING, logger="grouprp"):
        train.run(cfg)
    assert not [r for r in caplog.records if r.getMessage().startswith("memory:")] and len(started) == 2


@pytest.mark.slow
def test_the_planner_is_within_a_quarter_of_measured_training_steps(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import plan_check

    results = [plan_check.measure(name, plan_check.SHAPES[name], steps=2) for name in plan_check.QUICK]
    assert {r["world"] for r in results} == {1, 2} and {r["bits8"] for r in results} == {True, False}
    assert {r["gc"] for r in results} == {True, False}
    for r in results:
        assert abs(r["error"]) < 0.25, (r["shape"], r["measured"] / 2**20, r["planned"] / 2**20)


@pytest.mark.parametrize("extra", [[], ["model.random_init.tie_word_embeddings=true"],
                                   ["model.random_init.vocab_size=5000"],
                                   ["model.random_init.model_type=gemma"],  # ties by default: untied all the same
                                   ["model.random_init.model_type=gemma", "model.random_init.vocab_size=5000"]])
def test_the_planner_plans_the_random_base_train_builds(tmp_path, extra):
    """model.random_init: the planner's shape (vocabulary, tied embeddings) is the model's that train writes:
    the tokenizer's vocabulary unless vocab_size is given, untied unless tie_word_embeddings is."""
    from transformers import AutoConfig

    from grouprp.prepare import load_tokenizer
    from grouprp.train import _build_random_base

    cfg = load_config(ROOT / "configs" / "demo.yaml",
                      [f"model.base={tmp_path / 'base'}", "model.random_init.num_hidden_layers=1", *extra])
    planned = planner.model_shape(cfg)
    _build_random_base(cfg, load_tokenizer(cfg))
    built = AutoConfig.from_pretrained(cfg.model.base)
    assert planned == planner.Shape.of(built)
    assert planned.tied == ("model.random_init.tie_word_embeddings=true" in extra)
    assert planned.vocab == (5000 if "model.random_init.vocab_size=5000" in extra else len(load_tokenizer(cfg)))
