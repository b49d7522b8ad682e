"""`grouprp plan`: the peak memory per GPU of a config, from the model's config.json alone (no weights read).

The estimate adds up what training holds at its peak, the backward pass of the first micro-batch step:

- weights: the linear layers in int8 with one fp32 scale per output row (bitsandbytes LLM.int8), or 16-bit; the
  embeddings, `lm_head` and norms, which bitsandbytes leaves alone, in 16 bits under DeepSpeed's bf16 (it casts
  every float parameter) and in fp32 otherwise (peft's k-bit preparation upcasts them);
- the LoRA adapter: its weights, gradients and AdamW states, the fp32 master copy, states and gradients divided
  among the ranks under ZeRO stage 1 and 2, and ZeRO's two gradient buckets (reduce_bucket_size, `auto` being
  hidden_size squared, two of them with overlap_comm);
- activations of one micro-batch at `data.sequence_len` kept through the backward: with gradient checkpointing,
  each layer's input; without, every layer's saved tensors (per token: the norms' inputs and outputs, q, k, v,
  the attention output, gate, up and their product, and LoRA dropout's copies and masks);
- the larger of the backward's two transients, which never meet: the loss (`chunked` holds the logits of 1,024
  trained positions at a time, recomputed in backward; `full` those of every position, with the fp32 upcast),
  then, the logits freed, one layer's backward (recomputed under checkpointing; in 8-bit with its largest weight
  dequantized). The smaller is shown, not added;
- on a GPU the CUDA context, NCCL and the caching allocator's slack; on the CPU the libraries' buffers.

Where the arithmetic rests on measurement rather than on counting tensors, the constants below say so; the
planner is checked against measured peaks of real training steps on CPU (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from grouprp.config import Config, ConfigError

GIB = 1024 ** 3
GPUS = {"A100-40GB": 40, "A100-80GB": 80, "H100-80GB": 80, "H100-94GB": 94, "H200-141GB": 141, "L40S-48GB": 48,
        "A6000-48GB": 48, "L4-24GB": 24, "A10-24GB": 24, "RTX4090-24GB": 24, "RTX3090-24GB": 24, "V100-32GB": 32,
        "V100-16GB": 16, "T4-16GB": 16}
"""GPU names `--gpus` accepts, with their memory in GB as sold (GiB for the arithmetic: 40 GB cards report
about 39.4 GiB usable; the margin below covers that)."""
USABLE = 0.95  # of a GPU's memory that training may count on (the driver and fragmentation take the rest)
CUDA_OVERHEAD = 1.0 * GIB  # CUDA context, cuBLAS/NCCL workspaces, caching-allocator slack (typical, not measured)
CPU_OVERHEAD = 0.1 * GIB  # on the CPU: the libraries' buffers once training runs, measured (benchmarks/plan_check.py)
RECOMPUTED = 2  # one checkpointed layer in backward: its recomputed activations and as much again in gradients


def _loss_bytes(loss: str, compute: int) -> int:
    """Bytes per logit element at the loss's peak. In 16 bits: the logits, their fp32 copy, the log-softmax and
    its gradient, 14 (the Cut Cross-Entropy paper measured 13.4 for this baseline, arXiv 2411.09009); in fp32 no
    copy is made, and 10 is measured here (benchmarks/plan_check.py). The chunked loss holds one chunk's logits,
    recomputed in backward, with their softmax and gradient: 12 counted."""
    if loss == "full":
        return 14 if compute == 2 else 10
    return 12


@dataclass
class Shape:
    """The model, as the planner needs it (from config.json)."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    linear: dict[str, tuple[int, int]] = field(default_factory=dict)  # per-layer linear name -> (in, out)

    @classmethod
    def of(cls, config) -> "Shape":
        hidden, heads = config.hidden_size, config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or hidden // heads
        ffn = config.intermediate_size
        linear = {"q_proj": (hidden, heads * head_dim), "k_proj": (hidden, kv_heads * head_dim),
                  "v_proj": (hidden, kv_heads * head_dim), "o_proj": (heads * head_dim, hidden),
                  "gate_proj": (hidden, ffn), "up_proj": (hidden, ffn), "down_proj": (ffn, hidden)}
        return cls(hidden, ffn, config.num_hidden_layers, heads, kv_heads, head_dim, config.vocab_size,
                   bool(getattr(config, "tie_word_embeddings", False)), linear)

    @property
    def linear_params(self) -> int:
        return self.layers * sum(i * o for i, o in self.linear.values())

    @property
    def norm_params(self) -> int:
        return (2 * self.layers + 1) * self.hidden

    def layer_activations(self, dropout: bool) -> int:
        """Elements saved for backward per token by one decoder layer (see the module doc)."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        saved = 4 * self.hidden + 2 * q + 2 * kv + 4 * self.intermediate
        if dropout:  # LoRA's dropout: a dropped copy of each adapted layer's input (and a 1-byte mask each)
            saved += self.dropout_masks()
        return saved

    def dropout_masks(self) -> int:
        """Elements per token of LoRA dropout's masks (one per linear layer's input)."""
        return sum(i for i, _ in self.linear.values())


@dataclass
class Item:
    name: str
    bytes: float
    note: str = ""
    at_peak: bool = True  # False: held at another moment than the peak (shown, not added)


@dataclass
class Plan:
    """What one GPU (or CPU rank) holds at the peak, item by item."""

    items: list[Item]
    world_size: int
    device: str  # "gpu" or "cpu"
    gpu: Optional[str] = None
    gpu_bytes: Optional[float] = None

    @property
    def peak(self) -> float:
        return sum(item.bytes for item in self.items if item.at_peak)

    @property
    def fits(self) -> Optional[bool]:
        return None if self.gpu_bytes is None else self.peak <= self.gpu_bytes * USABLE


def estimate(cfg: Config, shape: Shape, world_size: int, device: str = "gpu") -> Plan:
    """The peak per rank for `cfg` on `world_size` ranks of `device` ("gpu": bf16 when train.bf16; "cpu": fp32)."""
    t, lora = cfg.train, cfg.lora
    bf16 = device == "gpu" and t.bf16
    compute = 2 if bf16 else 4
    zero = zero_settings(t.deepspeed)
    deepspeed = zero is not None
    items = []
    linear = shape.linear_params
    if cfg.model.load_in_8bit:
        rows = shape.layers * sum(o for _, o in shape.linear.values())
        items.append(Item("linear weights, int8", linear + 4 * rows,
                          f"{linear / 1e9:.2f} B parameters, 1 byte each, one fp32 scale per output row"))
    else:
        items.append(Item(f"linear weights, {'bf16' if bf16 else 'fp32'}", linear * compute,
                          f"{linear / 1e9:.2f} B parameters"))
    other = shape.vocab * shape.hidden * (1 if shape.tied else 2) + shape.norm_params
    # peft's k-bit preparation upcasts them to fp32; DeepSpeed's bf16 casts every float parameter back
    other_bytes = 2 if (bf16 and (deepspeed or not cfg.model.load_in_8bit)) else 4
    items.append(Item("embeddings, lm_head, norms", other * other_bytes,
                      f"{other / 1e6:,.0f} M parameters in {'bf16' if other_bytes == 2 else 'fp32'}, not quantized"))

    adapted = _adapted(shape, lora.target_modules)
    adapter = lora.r * shape.layers * sum(i + o for name, (i, o) in shape.linear.items() if name in adapted)
    if deepspeed:
        stage = int(zero.get("stage", 0))
        overlap = bool(zero.get("overlap_comm", stage == 3))  # DeepSpeed's default: on for stage 3 only
        value = zero.get("reduce_bucket_size", 5e8)
        elements = shape.hidden * shape.hidden if value == "auto" else int(float(value))
        shards = world_size if stage >= 1 else 1
        grad_shards = world_size if stage >= 2 else 1
        states = adapter * (4 + 8) / shards + adapter * 4 / grad_shards + adapter * compute
        bucket = elements * compute * (2 if overlap else 1)
        items.append(Item("LoRA weights, gradients, AdamW states", states,
                          f"{adapter / 1e6:,.1f} M parameters: {'bf16' if bf16 else 'fp32'} weights, fp32 master, "
                          f"moments and gradients, ZeRO-{stage} over {world_size} rank(s)"))
        items.append(Item("ZeRO gradient buckets", bucket,
                          f"{elements:,} elements{' x 2 (overlap_comm)' if overlap else ''}"))
    else:
        items.append(Item("LoRA weights, gradients, AdamW states", adapter * 16,
                          f"{adapter / 1e6:,.1f} M parameters, fp32, on every rank"))

    tokens = t.micro_batch_size * cfg.data.sequence_len
    dropout = lora.dropout > 0
    per_layer = shape.layer_activations(dropout) * compute + (shape.dropout_masks() if dropout else 0)
    edges = 4 * shape.hidden * compute  # the embeddings' output, the final norm, the hidden states the loss reads
    if t.gradient_checkpointing:
        held = shape.layers * shape.hidden * compute + edges
        note = "each layer's input, kept for its recomputation"
    else:
        held = shape.layers * per_layer + edges
        note = f"{per_layer / 1024:,.0f} KiB per token per layer, every layer's"
    items.append(Item("activations", held * tokens, f"{tokens:,} tokens per micro-batch; {note}"))

    # the backward's two moments of most memory never meet: first the loss (its logits and their gradient), then,
    # with the logits freed, one decoder layer at a time (recomputed under checkpointing, and its gradients)
    from grouprp.loss import CHUNK

    positions = min(CHUNK, tokens) if t.loss != "full" else tokens
    loss = Item(f"loss ({t.loss})", positions * shape.vocab * _loss_bytes(t.loss, compute),
                f"logits of {positions:,} positions x {shape.vocab:,} at a time, and their gradient")
    layer_bytes = per_layer * tokens * (RECOMPUTED if t.gradient_checkpointing else 1)
    if cfg.model.load_in_8bit:
        layer_bytes += max(i * o for i, o in shape.linear.values()) * compute  # a weight dequantized for backward
    layer = Item("one layer's backward", layer_bytes,
                 ("recomputed, with its gradients" if t.gradient_checkpointing else "its gradients")
                 + (" and the largest int8 weight dequantized" if cfg.model.load_in_8bit else ""))
    larger, smaller = (loss, layer) if loss.bytes >= layer.bytes else (layer, loss)
    smaller.at_peak = False
    items += [larger, smaller]
    items.append(Item("runtime", CUDA_OVERHEAD if device == "gpu" else CPU_OVERHEAD,
                      "CUDA context, NCCL, allocator slack" if device == "gpu" else "DeepSpeed and gloo buffers"))
    return Plan(items, world_size, device)


def largest_sequence_len(cfg: Config, shape: Shape, world_size: int, budget: float) -> int:
    """The longest data.sequence_len (a multiple of 256) whose peak fits in `budget` bytes; 0 when none does."""
    low, high = 0, 1 << 20
    while high - low > 256:
        middle = (low + high) // 2 // 256 * 256
        plan = estimate(replace(cfg, data=replace(cfg.data, sequence_len=max(middle, 256))), shape, world_size)
        low, high = (middle, high) if plan.peak <= budget else (low, middle)
    return low


def cheapest_change(cfg: Config, shape: Shape, world_size: int, budget: float) -> Optional[str]:
    """The changes, cheapest first (nothing lost, then less context), taken one after another until the peak
    fits in `budget` bytes; None when even all of them leave it too large."""
    steps = [("gradient_checkpointing", True, "train.gradient_checkpointing=true (about a third slower)"),
             ("loss", "chunked", "train.loss=chunked (the same loss without the full logits)"),
             ("micro_batch_size", 1, "train.micro_batch_size=1 (global_batch_size stays: more accumulation)"),
             ("load_in_8bit", True, "model.load_in_8bit=true")]
    taken = []
    for key, value, text in steps:
        if estimate(cfg, shape, world_size).peak <= budget:
            break
        section = "model" if key == "load_in_8bit" else "train"
        if getattr(getattr(cfg, section), key) != value:
            cfg = replace(cfg, **{section: replace(getattr(cfg, section), **{key: value})})
            taken.append(text)
    if estimate(cfg, shape, world_size).peak > budget:
        longest = largest_sequence_len(cfg, shape, world_size, budget)
        if longest < 1024:
            return None
        taken.append(f"data.sequence_len={longest} (long threads are cut into more windows; none is lost)")
    return ", then ".join(taken) or None


def parse_gpus(text: str) -> tuple[int, str, float]:
    """`2xA100-40GB` -> (2, 'A100-40GB', bytes per GPU). A bare size such as `24GB` is accepted too."""
    found = re.fullmatch(r"(?:(\d+)\s*[xX]\s*)?(.+)", text.strip())
    count = int(found.group(1) or 1)
    name = found.group(2).strip()
    key = next((k for k in GPUS if k.lower() == name.lower()), None)
    if key is not None:
        return count, key, GPUS[key] * 1e9
    size = re.fullmatch(r"(\d+(?:\.\d+)?)\s*GB", name, re.I)
    if size:
        return count, name, float(size.group(1)) * 1e9
    raise ConfigError(f"--gpus {text!r}: name a GPU ({', '.join(GPUS)}) or a size (24GB), with a count: 2xA100-40GB")


def model_config(cfg: Config):
    """The base model's transformers config, from a local folder, the random_init values or the local HF cache
    (or the hub, when it may be reached): no weights are read."""
    from transformers import AutoConfig

    m = cfg.model
    if m.random_init and not (Path(m.base) / "config.json").is_file():
        return random_base_config(m.random_init)
    if not m.base:
        raise ConfigError("model.base: required (a HF model id or a local folder)")
    local = Path(m.base)
    if local.exists():
        if not (local / "config.json").is_file():
            raise ConfigError(f"model.base: {m.base} has no config.json; name a model folder (or a HF model id)")
    elif m.base.startswith(("/", ".", "~")) or m.base.count("/") > 1 or "\\" in m.base:
        raise ConfigError(f"model.base: {m.base} does not exist (a local model folder, or a HF model id such as "
                          "Sao10K/MN-12B-Lyra-v4)")
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    if offline and not local.exists():
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(m.base, "config.json"), str):
            raise ConfigError(f"model.base: {m.base} is not a local folder and not in the Hugging Face cache, and "
                              f"HF_HUB_OFFLINE is set; download it first (huggingface-cli download {m.base}) or fix "
                              "the name")
    try:
        # offline (as `grouprp plan` always is) the hub library is not asked either, even if it was imported
        # before HF_HUB_OFFLINE was set
        return AutoConfig.from_pretrained(m.base, trust_remote_code=m.trust_remote_code, local_files_only=offline)
    except (OSError, ValueError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"model.base: cannot read the config of {m.base} ({first_line})") from None


def random_base_config(random_init: dict, vocab: Optional[int] = None):
    """The config of the random base model `train` builds from model.random_init (the one rule, for the planner
    and the builder): `vocab` (the tokenizer's size) unless vocab_size is given, untied embeddings unless
    tie_word_embeddings is."""
    from transformers import AutoConfig

    values = dict(random_init)
    if vocab is not None:
        values.setdefault("vocab_size", vocab)
    values.setdefault("tie_word_embeddings", False)
    try:
        return AutoConfig.for_model(values.pop("model_type", "mistral"), **values)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"model.random_init: {exc}") from None


def model_shape(cfg: Config) -> Shape:
    """The model's shape from its config.json: a local folder, model.random_init, or the local HF cache (offline:
    nothing is downloaded)."""
    with _offline():
        random = cfg.model.random_init
        if random and "vocab_size" not in random and not (Path(cfg.model.base) / "config.json").is_file():
            from grouprp.prepare import load_tokenizer

            return Shape.of(random_base_config(random, len(load_tokenizer(cfg))))  # what train will build
        return Shape.of(model_config(cfg))


def report(plan: Plan, cfg: Config, shape: Shape) -> str:
    lines = [f"{cfg.model.base or 'model.random_init'}: {shape.layers} layers, hidden {shape.hidden:,}, vocabulary "
             f"{shape.vocab:,}; {'8-bit' if cfg.model.load_in_8bit else '16-bit'} base, LoRA r={cfg.lora.r}, "
             f"micro batch {cfg.train.micro_batch_size} x sequence_len {cfg.data.sequence_len:,}, "
             f"{plan.world_size} GPU(s)", ""]
    width = max(len(item.name) for item in plan.items)
    for item in plan.items:
        size = f"{item.bytes / GIB:8.2f} GiB" if item.at_peak else f"({item.bytes / GIB:.2f} GiB)".rjust(12)
        note = item.note if item.at_peak else f"{item.note}; not at the peak, held at another moment"
        lines.append(f"  {item.name:<{width}}  {size}  {note}")
    lines += ["", f"peak per GPU: {plan.peak / GIB:.1f} GiB"]
    if plan.gpu_bytes is None:
        lines.append("no GPU here to compare with: name them for a verdict, e.g. --gpus 2xA100-40GB")
    else:
        budget = plan.gpu_bytes * USABLE
        verdict = "fits" if plan.fits else "does not fit"
        lines.append(f"{verdict} on {plan.world_size}x {plan.gpu} ({budget / GIB:.1f} GiB usable of "
                     f"{plan.gpu_bytes / GIB:.1f})")
        longest = largest_sequence_len(cfg, shape, plan.world_size, budget)
        lines.append(f"largest sequence_len that fits: {longest:,}" if longest else
                     "no sequence_len fits: the weights alone are too large")
        if not plan.fits:
            change = cheapest_change(cfg, shape, plan.world_size, budget)
            lines.append(f"cheapest change that fits: {change}" if change else
                         "nothing in the config makes it fit: use larger GPUs")
    return "\n".join(lines)


def plan_for(cfg: Config, gpus: Optional[str] = None) -> tuple[Plan, Shape]:
    """The plan for `--gpus` (for example 2xA100-40GB), or for the GPUs of this machine when not given."""
    count, name, size = parse_gpus(gpus) if gpus else local_gpus()
    return _planned(cfg, max(count, 1), name, size)


def _planned(cfg: Config, world_size: int, gpu: Optional[str], gpu_bytes: Optional[float]) -> tuple[Plan, Shape]:
    shape = model_shape(cfg)
    plan = estimate(cfg, shape, world_size)
    plan.gpu, plan.gpu_bytes = gpu, gpu_bytes
    return plan, shape


def local_gpus() -> tuple[int, Optional[str], Optional[float]]:
    """(count, name, bytes of the smallest) of this machine's CUDA GPUs; (0, None, None) without any."""
    import torch

    if not torch.cuda.is_available():
        return 0, None, None
    count = torch.cuda.device_count()
    smallest = min(range(count), key=lambda i: torch.cuda.get_device_properties(i).total_memory)
    return count, torch.cuda.get_device_name(smallest), float(torch.cuda.get_device_properties(smallest).total_memory)


def memory_warning(cfg: Config, world_size: int) -> Optional[str]:
    """What `train` says before loading anything when the planned peak exceeds this machine's GPU memory; None
    when it fits or there is no GPU to compare with (on a CPU the planner is a GPU planner)."""
    count, name, size = local_gpus()
    if not count:
        return None
    plan, shape = _planned(cfg, world_size, name, size)
    if plan.fits:
        return None
    change = cheapest_change(cfg, shape, world_size, size * USABLE)
    return (f"memory: the planned peak per GPU is {plan.peak / GIB:.1f} GiB, more than the {size * USABLE / GIB:.1f} "
            f"GiB usable on {name}; expect out-of-memory"
            + (f"; the cheapest change that fits: {change}" if change else "; use larger GPUs")
            + " (`grouprp plan` on this config shows the breakdown)")


def _adapted(shape: Shape, targets) -> set[str]:
    if targets == "all-linear":
        return set(shape.linear)
    names = [targets] if isinstance(targets, str) else list(targets)
    return {name for name in shape.linear if any(name == t or name.endswith(t) for t in names)}


def zero_settings(path: Optional[str]) -> Optional[dict]:
    """The `zero_optimization` settings of a DeepSpeed JSON ({} when it has none); None without DeepSpeed."""
    if not path:
        return None
    return json.loads(Path(path).read_text(encoding="utf-8")).get("zero_optimization", {})


@contextmanager
def _offline():
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous
