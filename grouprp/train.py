"""`run(cfg)`: data -> model -> Trainer -> adapter. The only module that imports peft, bitsandbytes and deepspeed.

One code path for every launcher: `deepspeed launch/train.py`, `torchrun launch/train.py` and `grouprp train`
(one process). The launcher decides the world size; the batch arithmetic follows from it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from grouprp.config import Config, ConfigError, to_dict
from grouprp.schema import DataError
from grouprp.tokenize import IGNORE_INDEX

log = logging.getLogger("grouprp")

CHECKPOINTS = "checkpoints"
RUN_INFO = "grouprp.json"


@dataclass(frozen=True)
class World:
    """Where this process stands in the launch, read from the launcher's environment."""

    rank: int
    local_rank: int
    size: int
    local_size: int

    @classmethod
    def from_env(cls) -> "World":
        size = int(os.environ.get("WORLD_SIZE", 1))
        local_size = os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("LOCAL_SIZE") or size  # torchrun, deepspeed
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), size, int(local_size))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def gradient_accumulation(cfg: Config, world_size: int) -> int:
    """global batch = micro batch x accumulation x world size; a config error when it does not divide."""
    per_step = cfg.train.micro_batch_size * world_size
    if cfg.train.global_batch_size % per_step:
        raise ConfigError(
            f"train.global_batch_size: {cfg.train.global_batch_size} is not a multiple of train.micro_batch_size "
            f"({cfg.train.micro_batch_size}) x world size ({world_size} processes from the launcher) = {per_step}; "
            f"change train.global_batch_size or train.micro_batch_size, or launch a different number of processes")
    return cfg.train.global_batch_size // per_step


def run(cfg: Config, callbacks: Sequence[Any] = ()) -> Path:
    """Train a LoRA adapter as the config says and save it in `output_dir`. Returns that folder."""
    world = World.from_env()
    accumulation = gradient_accumulation(cfg, world.size)
    _check_paths(cfg)

    import torch
    from transformers import set_seed

    from grouprp.prepare import load_prepared, load_tokenizer, prepare

    output_dir = Path(cfg.output_dir)
    args = training_arguments(cfg, accumulation, world)  # also starts the process group under a launcher
    if not torch.cuda.is_available():
        # CPU ranks share the cores; left alone, each rank starts a thread per core and they thrash (10x slower)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world.local_size))

    tokenizer = load_tokenizer(cfg)
    with args.main_process_first(desc="prepare the dataset"):
        if world.is_main:  # the other ranks wait here, then read what rank 0 wrote: they never tokenize
            _require_examples(prepare(cfg, tokenizer).manifest, output_dir)
            _build_random_base(cfg, tokenizer)
    dataset, manifest = load_prepared(output_dir)
    _require_examples(manifest, output_dir)
    train_set, eval_set = split_for_eval(cfg, dataset, tokenizer, world)

    # seeded right before the adapter is created: every rank, and every run whether or not it had to build
    # the random demo base first, starts from the same LoRA weights
    set_seed(cfg.train.seed)
    model = get_model(cfg, world)
    trainer = _trainer(cfg, args, model, tokenizer, train_set, eval_set, callbacks)
    resume = resume_checkpoint(cfg)
    if resume:
        log.info("resuming from %s", resume)
    trainer.train(resume_from_checkpoint=resume)
    if eval_set is not None:
        trainer.evaluate()
    if trainer.is_world_process_zero():
        save_outputs(cfg, trainer, tokenizer, manifest, len(train_set), world.size, accumulation)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    return output_dir


def _require_examples(manifest: dict, output_dir: Path) -> None:
    if manifest["examples"] == 0:
        raise DataError(f"{output_dir / 'manifest.json'}: no examples to train on ({manifest['entries_in']} entries "
                        f"read, dropped: {manifest['dropped']}); check data.path and the data.* filters")


def training_arguments(cfg: Config, accumulation: int, world: World):
    from transformers import TrainingArguments

    import torch

    t = cfg.train
    on_gpu = torch.cuda.is_available()
    if cfg.train.deepspeed and world.size == 1 and "RANK" not in os.environ:
        # DeepSpeed in one plain process looks for MPI unless it sees a launcher's environment
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    evaluate = _eval_requested(cfg)
    by_steps = t.save_steps > 0
    return TrainingArguments(
        output_dir=str(Path(cfg.output_dir) / CHECKPOINTS),
        per_device_train_batch_size=t.micro_batch_size,
        per_device_eval_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=accumulation,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        bf16=t.bf16 and on_gpu,  # CPU ranks train in fp32 around the 8-bit weights
        deepspeed=t.deepspeed,
        gradient_checkpointing=False,  # enabled on the model itself (non-reentrant), see get_model
        save_strategy="steps" if by_steps else "epoch",
        save_steps=t.save_steps if by_steps else 500,
        save_total_limit=t.save_total_limit,
        eval_strategy=("steps" if cfg.eval.steps else "epoch") if evaluate else "no",
        eval_steps=cfg.eval.steps or None,
        eval_on_start=evaluate,  # the loss before training, to compare with the one after
        logging_steps=t.logging_steps,
        logging_first_step=True,
        report_to=[r for r in t.report_to if r != "none"],
        seed=t.seed,
        data_seed=t.seed,
        use_cpu=not on_gpu,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False if world.size > 1 else None,
        disable_tqdm=True,  # the grouprp progress bar replaces the default one
    )


def _eval_requested(cfg: Config) -> bool:
    return isinstance(cfg.eval.split, str) or cfg.eval.split > 0


def _check_paths(cfg: Config) -> None:
    if cfg.train.deepspeed and not Path(cfg.train.deepspeed).is_file():
        raise ConfigError(f"train.deepspeed: {cfg.train.deepspeed} not found (a DeepSpeed JSON such as "
                          "configs/zero2.json, or null to train without DeepSpeed)")
    if cfg.train.resume not in ("auto", "never") and not Path(cfg.train.resume).is_dir():
        raise ConfigError(f"train.resume: {cfg.train.resume} is not a checkpoint folder; use auto, never or a path")
    if not cfg.model.base:
        raise ConfigError("model.base: required (a HF model id or a local folder)")
    if "wandb" in cfg.train.report_to and importlib.util.find_spec("wandb") is None:
        raise ConfigError("train.report_to: wandb is not installed; `pip install -e .[wandb]` (and `wandb login`), "
                          "or drop it from train.report_to")


def split_for_eval(cfg: Config, dataset, tokenizer, world: World):
    """The training examples and the held-out ones (a seeded fraction, or a data file of its own)."""
    columns = ["input_ids", "labels"]
    split = cfg.eval.split
    if isinstance(split, str):
        from grouprp.prepare import load_prepared, prepare

        eval_cfg = replace(cfg, output_dir=str(Path(cfg.output_dir) / "eval_data"), data=replace(cfg.data, path=split))
        if world.is_main:
            prepare(eval_cfg, tokenizer)
        _barrier()
        held_out, _ = load_prepared(eval_cfg.output_dir)
        return dataset.select_columns(columns), held_out.select_columns(columns)
    if split == 0:
        return dataset.select_columns(columns), None
    train_rows, eval_rows = held_out_rows(dataset["id"], split, cfg.train.seed)
    if not train_rows or not eval_rows:
        raise ConfigError(f"eval.split: cannot hold out {split:g} of {len(dataset)} examples from "
                          f"{len(set(_source_of(i) for i in dataset['id']))} thread(s) and still train; lower "
                          "eval.split, set it to 0, or give a path to held-out data")
    return dataset.select(train_rows).select_columns(columns), dataset.select(eval_rows).select_columns(columns)


def held_out_rows(ids: Sequence[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split example rows into train and eval by whole threads (or scenes): windows of one thread never straddle.

    Threads are drawn in a seeded random order until at least `fraction` of the examples are held out, but
    never all of them.
    """
    groups: dict[str, list[int]] = {}
    for row, example_id in enumerate(ids):
        groups.setdefault(_source_of(example_id), []).append(row)
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    wanted = max(1, math.floor(len(ids) * fraction))
    held: list[int] = []
    for name in order[:-1]:
        if len(held) >= wanted:
            break
        held.extend(groups[name])
    held_set = set(held)
    return [r for r in range(len(ids)) if r not in held_set], sorted(held)


def _source_of(example_id: str) -> str:
    """The thread (or scene) an example comes from: its id before the window/reply suffix."""
    return example_id.split("#", 1)[0]


def _barrier() -> None:
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _build_random_base(cfg: Config, tokenizer) -> None:
    """Write a randomly initialised model to model.base once, for demos and tests (model.random_init)."""
    if not cfg.model.random_init or (Path(cfg.model.base) / "config.json").exists():
        return
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    values = dict(cfg.model.random_init)
    model_type = values.pop("model_type", "mistral")
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                  tie_word_embeddings=False, **values)
    torch.manual_seed(cfg.train.seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(cfg.model.base)
    tokenizer.save_pretrained(cfg.model.base)
    log.info("wrote a random %s model (%s) to %s", model_type, _count(config), cfg.model.base)


def _count(config) -> str:
    return f"{config.num_hidden_layers} layers, hidden {config.hidden_size}"


def get_model(cfg: Config, world: World):
    """The base model (8-bit when configured) prepared for k-bit training, with a fresh LoRA adapter."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    on_gpu = torch.cuda.is_available()
    kwargs: dict[str, Any] = dict(attn_implementation=cfg.model.attn_implementation,
                                  trust_remote_code=cfg.model.trust_remote_code,
                                  dtype=torch.bfloat16 if (cfg.train.bf16 and on_gpu) else torch.float32)
    if cfg.model.load_in_8bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        kwargs["device_map"] = {"": world.local_rank if on_gpu else "cpu"}
    model = AutoModelForCausalLM.from_pretrained(cfg.model.base, **kwargs)
    model.config.use_cache = False
    checkpointing = {"use_reentrant": False}
    if cfg.model.load_in_8bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.train.gradient_checkpointing,
                                                gradient_checkpointing_kwargs=checkpointing)
    elif cfg.train.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing)
        model.enable_input_require_grads()
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def resume_checkpoint(cfg: Config) -> Optional[str]:
    """The checkpoint to resume from: `train.resume` as a path, the latest one for `auto`, none for `never`."""
    if cfg.train.resume == "never":
        return None
    if cfg.train.resume != "auto":
        return cfg.train.resume
    from transformers.trainer_utils import get_last_checkpoint

    folder = Path(cfg.output_dir) / CHECKPOINTS
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def collate(tokenizer):
    """Right-pad a batch: ids with the pad token, labels with IGNORE_INDEX, and an attention mask."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def collate_batch(rows: list[dict]) -> dict:
        longest = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), longest), pad, dtype=torch.long)
        labels = torch.full((len(rows), longest), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.as_tensor(r["input_ids"])
            labels[i, :n] = torch.as_tensor(r["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    return collate_batch


def _trainer(cfg, args, model, tokenizer, train_set, eval_set, callbacks):
    from transformers import Trainer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from grouprp.progress import ProgressBar, StopAfter, TrainedTokens

    class RoleplayTrainer(TrainedTokens, Trainer):
        pass

    trainer = RoleplayTrainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                              data_collator=collate(tokenizer), processing_class=tokenizer)
    for default in (ProgressCallback, PrinterCallback):
        trainer.remove_callback(default)
    trainer.add_callback(ProgressBar(trainer))
    if cfg.train.stop_after_steps:
        trainer.add_callback(StopAfter(cfg.train.stop_after_steps))
    for callback in callbacks:
        trainer.add_callback(callback)
    return trainer


def save_outputs(cfg: Config, trainer, tokenizer, manifest: dict, samples: int, world_size: int,
                 accumulation: int) -> None:
    """Adapter, tokenizer, resolved config, format name and model card, all in output_dir."""
    output_dir = Path(cfg.output_dir)
    trainer.model.save_pretrained(str(output_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(output_dir))
    (output_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    info = {"template": cfg.data.template, "train_on_names": cfg.data.train_on_names,
            "base_model": cfg.model.base, "load_in_8bit": cfg.model.load_in_8bit,
            "metrics": _metrics(trainer)}
    (output_dir / RUN_INFO).write_text(json.dumps(info, indent=2) + "\n")
    (output_dir / "README.md").write_text(model_card(cfg, samples, world_size, accumulation, info["metrics"]))
    log.info("saved the adapter, tokenizer, config and model card to %s", output_dir)


def _metrics(trainer) -> dict:
    history = trainer.state.log_history
    train_losses = [h["loss"] for h in history if "loss" in h]
    eval_losses = [h["eval_loss"] for h in history if "eval_loss" in h]
    return {"steps": trainer.state.global_step, "final_train_loss": train_losses[-1] if train_losses else None,
            "eval_loss_before": eval_losses[0] if eval_losses else None,
            "eval_loss": eval_losses[-1] if eval_losses else None}


def model_card(cfg: Config, samples: int, world_size: int, accumulation: int, metrics: dict) -> str:
    """A model card whose "Training metrics" block is filled from the run."""
    t, lora = cfg.train, cfg.lora
    stage = _deepspeed_stage(t.deepspeed)
    quantization = "8-bit (bitsandbytes LLM.int8)" if cfg.model.load_in_8bit else "none (full precision base)"
    targets = lora.target_modules if isinstance(lora.target_modules, str) else ", ".join(lora.target_modules)
    rows = [
        ("Samples", f"{samples:,}"),
        ("GPUs", f"{world_size}" + ("" if _on_gpu() else " (CPU processes)")),
        ("Global batch size", f"{t.global_batch_size} (micro batch {t.micro_batch_size} x accumulation "
                              f"{accumulation} x {world_size})"),
        ("LoRA", f"r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}, targets: {targets}"),
        ("Quantization", quantization),
        ("Epochs", f"{t.epochs:g}" + (f" (max_steps {t.max_steps})" if t.max_steps > 0 else "")),
        ("Learning rate", f"{t.learning_rate:g}"),
        ("Scheduler", f"{t.lr_scheduler}, warmup ratio {t.warmup_ratio:g}"),
        ("DeepSpeed", f"ZeRO stage {stage}" if stage is not None else "not used"),
        ("Sequence length", f"{cfg.data.sequence_len:,}"),
        ("Optimizer steps", f"{metrics['steps']}"),
        ("Final train loss", _fmt(metrics["final_train_loss"])),
        ("Eval loss (trained tokens only)", f"{_fmt(metrics['eval_loss'])} (before training: "
                                            f"{_fmt(metrics['eval_loss_before'])})"),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"""---
base_model: {cfg.model.base}
library_name: peft
tags: [lora, roleplay, grouprp]
---
# LoRA adapter for {cfg.model.base}

Trained with [grouprp](https://github.com/grouprp/grouprp) on group roleplay data in the `{cfg.data.template}` format
(`train_on_names: {str(cfg.data.train_on_names).lower()}`). Prompts must be rendered in that same format; `grouprp.json`
beside this file records it.

## Training metrics

| | |
|---|---|
{table}
"""


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _deepspeed_stage(path: Optional[str]) -> Optional[int]:
    if not path:
        return None
    return json.loads(Path(path).read_text()).get("zero_optimization", {}).get("stage")


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()
