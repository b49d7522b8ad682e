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
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from grouprp.checkpoints import checkpoint_problem, latest_complete
from grouprp.config import Config, ConfigError, to_dict
from grouprp.inference import CARD_COPY, RUN_INFO, Sampling
from grouprp.logs import launcher_rank, quiet_third_party
from grouprp.packing import PackedRows, fill, packed_dataset
from grouprp.plan import memory_warning, model_config, random_base_config, zero_settings
from grouprp.preemption import Preempted, Preemption
from grouprp.schema import DataError
from grouprp.tokenize import IGNORE_INDEX

log = logging.getLogger("grouprp")

CHECKPOINTS = "checkpoints"


def launcher_world_size() -> int:
    """How many processes the launcher started. Read from its environment, because the batch arithmetic must be
    checked before anything (the process group included) starts."""
    return int(os.environ.get("WORLD_SIZE", "1"))


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
    """Train a LoRA adapter as the config says and save it in `output_dir`. Returns that folder.

    The steps, each logged on rank 0: config, data, model, training, result.
    """
    world_size = launcher_world_size()
    accumulation = gradient_accumulation(cfg, world_size)
    quiet_third_party()
    check_before_loading(cfg)
    if launcher_rank() == 0:  # one rank is enough to say it
        warning = memory_warning(cfg, world_size)
        if warning:
            log.warning("%s", warning)
    preemption = Preemption()  # from here on SIGTERM and SIGUSR1 mean: stop after a step, with a checkpoint
    try:
        return _run(cfg, callbacks, world_size, accumulation, preemption)
    finally:
        preemption.close()
        release_cpu_allreduce_buffer()


def release_cpu_allreduce_buffer() -> None:
    """Remove this rank's DeepSpeed CPU all-reduce buffer from /dev/shm.

    On CPU under the deepspeed launcher, DeepSpeed's shared-memory all-reduce (ops/csrc/cpu/comm/shm.cpp, still
    in 0.19.8) creates a 66 MB file per rank in /dev/shm and never unlinks it, so every run, finished or failed,
    left world-size of them in memory until a reboot (a day of test runs filled a 24 GB machine). Each rank
    removes its own when it is done: the others mapped it when the process group started, and a mapping
    outlives the name. A rank killed outright still leaves its file behind.
    """
    if "RANK" not in os.environ or "MASTER_PORT" not in os.environ:
        return
    name = "deepspeed_allreduce_buffer_{}_{}_{}_{}".format(os.getuid(), os.environ.get("MASTER_ADDR", ""),
                                                            os.environ["MASTER_PORT"], os.environ["RANK"])
    try:
        os.unlink(Path("/dev/shm") / name)
    except OSError:  # not made (GPU, torchrun, one process) or not ours to remove
        pass


def _run(cfg: Config, callbacks: Sequence[Any], world_size: int, accumulation: int, preemption: Preemption) -> Path:

    import pyarrow.compute as pc
    import torch
    from accelerate import PartialState
    from transformers import set_seed

    from grouprp.prepare import load_prepared, load_tokenizer, prepare

    output_dir = Path(cfg.output_dir)
    if not torch.cuda.is_available():
        # CPU ranks share the cores; left alone, each rank starts a thread per core and they thrash (10x slower)
        threads = max(1, (os.cpu_count() or 1) // world_size)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        torch.set_num_threads(threads)
    args = training_arguments(cfg, accumulation)  # also starts the process group under a launcher
    state = PartialState()
    if not state.is_main_process:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # one rank's loading bars are enough
    log.info("config: %s (%s), %d process%s, global batch %d = micro batch %d x accumulation %d x %d",
             cfg.output_dir, cfg.data.template, world_size, "es" if world_size > 1 else "",
             cfg.train.global_batch_size, cfg.train.micro_batch_size, accumulation, world_size)

    tokenizer = load_tokenizer(cfg)
    with state.main_process_first():
        if state.is_main_process:  # the other ranks wait here, then read what rank 0 wrote: they never tokenize
            _require_examples(prepare(cfg, tokenizer).manifest, output_dir)
            _build_random_base(cfg, tokenizer)
    dataset, manifest = load_prepared(output_dir)
    _require_examples(manifest, output_dir)
    train_set, eval_set = split_for_eval(cfg, dataset, tokenizer)
    lengths = pc.list_value_length(train_set.with_format("arrow")["input_ids"]).to_numpy()  # no token is copied
    rows = fill(lengths.tolist(), cfg.data.sequence_len, cfg.train.packing)
    if cfg.train.packing:
        train_set = packed_dataset(train_set, cfg.data.sequence_len,
                                   output_dir / "packed" / f"train-rank{state.process_index}.arrow")
    log.info("data: %d examples, %s tokens (%s trained); %d for training in %d rows (%s), %d held out for eval; "
             "token efficiency %.3f", manifest["examples"], f"{manifest['tokens']:,}",
             f"{manifest['trained_tokens']:,}", rows.examples, rows.rows, "packed" if cfg.train.packing else
             "one example each", 0 if eval_set is None else len(eval_set), rows.efficiency)

    # seeded right before the adapter is created: every rank, and every run whether or not it had to build
    # the random demo base first, starts from the same LoRA weights
    set_seed(cfg.train.seed)
    model = get_model(cfg, state.local_process_index)
    trainable, total = model.get_nb_trainable_parameters()
    log.info("model: %s%s, LoRA r=%d on %s: %s trainable of %s parameters", cfg.model.base,
             " in 8 bits" if cfg.model.load_in_8bit else "", cfg.lora.r, _targets(cfg), f"{trainable:,}",
             f"{total:,}")
    trainer = _trainer(cfg, args, model, tokenizer, train_set, eval_set, [preemption, *callbacks])
    log.info("loss: %s", {"full": "the model's own, over the logits of every position",
                          "chunked": "LM head and cross-entropy at trained positions only, a chunk at a time",
                          "liger": "Liger Kernel's fused linear cross-entropy at trained positions only"}[
                              trainer.loss_path])
    with state.main_process_first():  # rank 0 moves incomplete checkpoints aside before the others look
        resume = resume_checkpoint(cfg, tidy=state.is_main_process)
    if resume:
        log.info("resuming from %s", resume)
    trainer.train(resume_from_checkpoint=resume)
    if preemption.stopped:
        step = trainer.state.global_step
        raise Preempted(preemption.stopped, step, output_dir / CHECKPOINTS / f"checkpoint-{step}")
    if eval_set is not None:
        trainer.evaluate()
    trainer.save_model(str(output_dir))  # every rank takes part; the main process writes the adapter
    if state.is_main_process:
        metrics = save_run_files(cfg, trainer, rows, world_size, accumulation)
        log.info("result: %d steps, final train loss %s, eval loss %s (before training %s); adapter in %s",
                 metrics["steps"], _fmt(metrics["final_train_loss"]), _fmt(metrics["eval_loss"]),
                 _fmt(metrics["eval_loss_before"]), output_dir)
    state.wait_for_everyone()
    return output_dir


def _require_examples(manifest: dict, output_dir: Path) -> None:
    if manifest["examples"] == 0:
        raise DataError(f"{output_dir / 'manifest.json'}: no examples to train on ({manifest['entries_in']} entries "
                        f"read, dropped: {manifest['dropped']}); check data.path and the data.* filters")


def training_arguments(cfg: Config, accumulation: int):
    from transformers import TrainingArguments

    import torch

    t = cfg.train
    on_gpu = torch.cuda.is_available()
    if cfg.train.deepspeed and "RANK" not in os.environ:
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
        save_strategy="steps" if by_steps else "epoch",
        save_steps=t.save_steps if by_steps else 500,
        save_total_limit=None,  # grouprp rotates checkpoints itself, once the newest is complete (callbacks.py)
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
        ddp_find_unused_parameters=False if launcher_world_size() > 1 else None,
        disable_tqdm=True,  # the grouprp progress report replaces the default bar
    )


def _eval_requested(cfg: Config) -> bool:
    return isinstance(cfg.eval.split, str) or cfg.eval.split > 0


def check_before_loading(cfg: Config) -> None:
    """Every training setting that can be wrong, checked before any data, tokenizer or weights load; each error
    names its dotted key."""
    t = cfg.train
    if t.resume not in ("auto", "never"):
        problem = checkpoint_problem(Path(t.resume))
        if problem:
            raise ConfigError(f"train.resume: {t.resume} {problem}; use auto, never or a complete checkpoint folder")
    if "wandb" in t.report_to and importlib.util.find_spec("wandb") is None:
        raise ConfigError("train.report_to: wandb is not installed; `pip install -e .[wandb]` (and `wandb login`), "
                          "or drop it from train.report_to")
    from transformers import SchedulerType

    schedulers = [s.value for s in SchedulerType]
    if t.lr_scheduler not in schedulers:
        raise ConfigError(f"train.lr_scheduler: unknown scheduler {t.lr_scheduler!r}; one of {', '.join(schedulers)}")
    _check_attention(cfg.model.attn_implementation)
    if t.deepspeed:
        _check_deepspeed(cfg)
    _check_lora_targets(cfg, model_config(cfg))


def _check_attention(name: str) -> None:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.utils import is_flash_attn_2_available

    if "/" in name:  # an attention kernel from the hub, which transformers fetches and checks when it loads
        return
    known = ["eager", *(k for k in ALL_ATTENTION_FUNCTIONS.keys() if "|" not in k)]
    if name not in known:
        raise ConfigError(f"model.attn_implementation: unknown {name!r}; one of {', '.join(known)}")
    if name == "flash_attention_2" and not is_flash_attn_2_available():
        raise ConfigError("model.attn_implementation: flash_attention_2 needs a CUDA GPU and the flash-attn package "
                          "(pip install flash-attn); or use sdpa")


def _check_deepspeed(cfg: Config) -> None:
    path = Path(cfg.train.deepspeed)
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ConfigError(f"train.deepspeed: {path} is not valid JSON ({getattr(exc, 'msg', exc)}{where})") from None
    if not isinstance(settings, dict):
        raise ConfigError(f"train.deepspeed: {path} must hold a JSON object of DeepSpeed settings")
    zero = settings.get("zero_optimization", {})
    stage = zero.get("stage", 0) if isinstance(zero, dict) else None
    if not isinstance(stage, int) or isinstance(stage, bool) or stage not in (0, 1, 2, 3):
        raise ConfigError(f"train.deepspeed: {path}: zero_optimization.stage must be 0, 1, 2 or 3, got {stage!r}")
    for name, ours, key in (("train_micro_batch_size_per_gpu", cfg.train.micro_batch_size, "train.micro_batch_size"),
                            ("train_batch_size", cfg.train.global_batch_size, "train.global_batch_size")):
        value = settings.get(name, "auto")
        if value != "auto" and value != ours:
            raise ConfigError(f"train.deepspeed: {path} sets {name} {value!r} but {key} is {ours}; set it to "
                              "\"auto\" so the Trainer fills it from the YAML")


def _check_lora_targets(cfg: Config, config) -> None:
    """lora.target_modules must name modules of the model, found on a skeleton built without weights."""
    import re

    import torch
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=cfg.model.trust_remote_code)
    names = [name for name, _ in skeleton.named_modules() if name]
    linear = sorted({name.rsplit(".", 1)[-1] for name, module in skeleton.named_modules()
                     if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head")})
    targets = cfg.lora.target_modules
    if targets == "all-linear":
        missing = [] if linear else ["all-linear"]
    elif isinstance(targets, str):  # PEFT reads a single string as a regular expression over module names
        missing = [] if any(re.fullmatch(targets, name) for name in names) else [targets]
    else:
        missing = [t for t in targets if not any(name == t or name.endswith(f".{t}") for name in names)]
    if missing:
        raise ConfigError(f"lora.target_modules: {', '.join(map(repr, missing))} matches no module of "
                          f"{type(skeleton).__name__}; its linear layers are {', '.join(linear) or 'none'} "
                          "(or use all-linear)")


def split_for_eval(cfg: Config, dataset, tokenizer):
    """The training examples and the held-out ones (a seeded fraction, or a data file of its own)."""
    columns = ["input_ids", "labels"]
    split = cfg.eval.split
    if isinstance(split, str):
        from accelerate import PartialState

        from grouprp.prepare import load_prepared, prepare

        eval_cfg = replace(cfg, output_dir=str(Path(cfg.output_dir) / "eval_data"), data=replace(cfg.data, path=split))
        state = PartialState()
        with state.main_process_first():
            if state.is_main_process:
                prepare(eval_cfg, tokenizer)
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


def _build_random_base(cfg: Config, tokenizer) -> None:
    """Write a randomly initialised model to model.base once, for demos and tests (model.random_init)."""
    if not cfg.model.random_init or (Path(cfg.model.base) / "config.json").exists():
        return
    import torch
    from transformers import AutoModelForCausalLM

    config = random_base_config(cfg.model.random_init, len(tokenizer))  # a larger vocab_size may be asked for
    if config.vocab_size < len(tokenizer):
        raise ConfigError(f"model.random_init.vocab_size: {config.vocab_size} is below the tokenizer's "
                          f"{len(tokenizer):,} tokens")
    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(cfg.train.seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(cfg.model.base)
    tokenizer.save_pretrained(cfg.model.base)
    log.info("wrote a random %s model (%s) to %s", config.model_type, _count(config), cfg.model.base)


def _count(config) -> str:
    return f"{config.num_hidden_layers} layers, hidden {config.hidden_size}"


def get_model(cfg: Config, local_rank: int = 0):
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
        kwargs["device_map"] = {"": local_rank if on_gpu else "cpu"}
    model = AutoModelForCausalLM.from_pretrained(cfg.model.base, **kwargs)
    model.config.use_cache = False
    if cfg.model.load_in_8bit:
        # freezes the base and keeps norms and embeddings in fp32; checkpointing is switched on below, under its
        # current name (peft would call the deprecated one)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if cfg.train.gradient_checkpointing:
        # non-reentrant: LoRA weights inside checkpointed layers get gradients though the frozen embeddings' output
        # needs none
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:  # older transformers (5.17, for one) know it only under its old name
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def resume_checkpoint(cfg: Config, tidy: bool) -> Optional[str]:
    """The checkpoint to resume from: `train.resume` as a path, the latest complete one for `auto`, none for
    `never`. With `tidy` (one process), incomplete ones newer than it are moved aside."""
    if cfg.train.resume == "never":
        return None
    if cfg.train.resume != "auto":
        return cfg.train.resume
    found = latest_complete(Path(cfg.output_dir) / CHECKPOINTS, tidy)
    return str(found) if found else None


def _trainer(cfg, args, model, tokenizer, train_set, eval_set, callbacks):
    from transformers import Trainer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from transformers import DataCollatorForSeq2Seq

    from grouprp.callbacks import CompleteCheckpoints, ProgressBar, StopAfter, TrainedTokens
    from grouprp.loss import TrainedTokenLoss, loss_path

    class RoleplayTrainer(TrainedTokens, TrainedTokenLoss, Trainer):
        pass

    if tokenizer.pad_token is None:  # Mistral-Nemo's has none; padded positions are masked and never trained
        tokenizer.pad_token = tokenizer.eos_token
    if cfg.train.packing:  # position ids instead of an attention mask: the examples of a row stay apart
        collator = PackedRows(tokenizer.pad_token_id)
    else:  # right-pads input_ids with the pad token and labels with IGNORE_INDEX, and builds the attention mask
        collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX,
                                          return_tensors="pt")
    trainer = RoleplayTrainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                              data_collator=collator, processing_class=tokenizer)
    trainer.loss_path = loss_path(cfg.train.loss)
    for default in (ProgressCallback, PrinterCallback):
        trainer.remove_callback(default)
    trainer.add_callback(ProgressBar())
    trainer.add_callback(CompleteCheckpoints(keep=cfg.train.save_total_limit))
    if cfg.train.stop_after_steps:
        trainer.add_callback(StopAfter(cfg.train.stop_after_steps))
    for callback in callbacks:
        trainer.add_callback(callback)
    return trainer


def save_run_files(cfg: Config, trainer, rows, world_size: int, accumulation: int) -> dict:
    """Beside the adapter and tokenizer (saved by the Trainer): the resolved config, the format's name for
    inference, and the model card. Returns the run's metrics."""
    from grouprp.modes import get_mode

    output_dir = Path(cfg.output_dir)
    (output_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    if cfg.data.card:  # chat needs the card; keep it with the adapter, as the kind of file it is
        suffix = Path(cfg.data.card).suffix.lower()
        shutil.copyfile(cfg.data.card, output_dir / (CARD_COPY if suffix in (".yaml", ".yml") else f"card{suffix}"))
    info = {"template": cfg.data.template, "train_on_names": cfg.data.train_on_names,
            "base_model": cfg.model.base, "load_in_8bit": cfg.model.load_in_8bit, "packing": cfg.train.packing,
            "loss_path": trainer.loss_path, "metrics": _metrics(trainer)}
    (output_dir / RUN_INFO).write_text(json.dumps(info, indent=2) + "\n")
    mode = get_mode(cfg)
    card = model_card(cfg, mode, rows, world_size, accumulation, info["metrics"], trainer.loss_path)
    (output_dir / "README.md").write_text(card)
    return info["metrics"]


def _metrics(trainer) -> dict:
    history = trainer.state.log_history
    train_losses = [h["loss"] for h in history if "loss" in h]
    eval_losses = [h["eval_loss"] for h in history if "eval_loss" in h]
    return {"steps": trainer.state.global_step, "final_train_loss": train_losses[-1] if train_losses else None,
            "eval_loss_before": eval_losses[0] if eval_losses else None,
            "eval_loss": eval_losses[-1] if eval_losses else None}


def model_card(cfg: Config, mode, filled, world_size: int, accumulation: int, metrics: dict, loss: str) -> str:
    """A model card whose "Training metrics" block is filled from the run."""
    t, lora = cfg.train, cfg.lora
    zero = zero_settings(t.deepspeed)
    quantization = "8-bit (bitsandbytes LLM.int8)" if cfg.model.load_in_8bit else "none (full precision base)"
    targets = _targets(cfg)
    rows = [
        ("Samples", f"{filled.examples:,}" + (f" in {filled.rows:,} packed rows" if t.packing else "")),
        ("GPUs", f"{world_size}" + ("" if _on_gpu() else " (CPU processes)")),
        ("Global batch size", f"{t.global_batch_size} (micro batch {t.micro_batch_size} x accumulation "
                              f"{accumulation} x {world_size})"),
        ("LoRA", f"r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}, targets: {targets}"),
        ("Quantization", quantization),
        ("Epochs", f"{t.epochs:g}" + (f" (max_steps {t.max_steps})" if t.max_steps > 0 else "")),
        ("Learning rate", f"{t.learning_rate:g}"),
        ("Scheduler", f"{t.lr_scheduler}, warmup ratio {t.warmup_ratio:g}"),
        ("DeepSpeed", f"ZeRO stage {zero.get('stage', 0)}" if zero is not None else "not used"),
        ("Sequence length", f"{cfg.data.sequence_len:,}"),
        ("One optimizer step", "about {:,.1f} examples, {:,.0f} tokens ({} row{}; token efficiency {:.3f})".format(
            *filled.per_step(t.global_batch_size), t.global_batch_size, "s" if t.global_batch_size > 1 else "",
            filled.efficiency)),
        ("Loss", loss),
        ("Optimizer steps", f"{metrics['steps']}"),
        ("Final train loss", _fmt(metrics["final_train_loss"])),
        ("Eval loss (trained tokens only)", f"{_fmt(metrics['eval_loss'])} (before training: "
                                            f"{_fmt(metrics['eval_loss_before'])})"),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    sampling = Sampling()
    stops = ", ".join(f"`{s}`" for s in mode.format.stop_strings) or "none but EOS"
    fence = "````"
    return f"""---
base_model: {cfg.model.base}
library_name: peft
tags: [lora, roleplay, grouprp]
---
# LoRA adapter for {cfg.model.base}

Trained with [grouprp](https://github.com/grouprp/grouprp) on {mode.describe()}, in the `{cfg.data.template}` format
(`train_on_names: {str(cfg.data.train_on_names).lower()}`). Prompts must be rendered in that same format; `grouprp.json`
beside this file records it.

## How to prompt

`grouprp chat` renders conversations exactly as training did; `grouprp export-preset --to sillytavern` writes
matching SillyTavern presets. The prompt, up to where the model writes (here it also picks who speaks next):

{fence}
{mode.sample_prompt()}
{fence}

Stop strings: {stops} (and the tokenizer's EOS); the stop text is not part of the reply. Sampler defaults:
temperature {sampling.temperature}, min_p {sampling.min_p}, top_p {sampling.top_p}, repetition penalty
{sampling.repetition_penalty} (Mistral recommends a low temperature, 0.3, for Mistral-Nemo).

## Training metrics

| | |
|---|---|
{table}
"""


def _targets(cfg: Config) -> str:
    targets = cfg.lora.target_modules
    return targets if isinstance(targets, str) else ", ".join(targets)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()
