"""Typed run configuration: YAML plus `key=value` overrides into dataclasses, validated by dotted key.

This is the only module that reads YAML. Every field carries a one-line `help` that doubles as documentation
(`grouprp config-help` prints them). Validation happens here, before any tokenizer or model is loaded, and every
error names the offending dotted key.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from grouprp.schema import TAVERN_FIELDS

_SCIENTIFIC = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


class ConfigError(ValueError):
    """A config problem a user can fix; the message starts with the dotted key."""


def _f(default: Any, help: str, **limits: Any) -> Any:
    """A dataclass field with a help line and optional numeric limits (`min`, `max`, `exclusive_min`)."""
    meta = {"help": help, **limits}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class SheetField:
    """One field of the character-sheet schema."""

    name: str = _f("", "field name as rendered, e.g. 'Good Attributes'")
    kind: Literal["scalar", "list", "text"] = _f("scalar", "scalar: one line; list: items; text: free paragraphs")
    aliases: list[str] = _f([], "other keys accepted for this field, case-insensitive")


def default_sheet_schema() -> list[SheetField]:
    """The seed recipe's sheet schema, in render order."""
    rows = [
        ("Character Name", "scalar", ["name", "full name", "character", "character name"]),
        ("Age", "scalar", []),
        ("Race", "scalar", ["species"]),
        ("Mageblood Type", "scalar", ["mageblood"]),
        ("Favored Magic Class", "scalar", ["favoured magic class", "magic class"]),
        ("Previous Magic Training", "scalar", ["magic training"]),
        ("Occupation/Profession", "scalar", ["occupation", "profession", "job"]),
        ("Appearance", "list", ["looks", "physical description", "physical appearance"]),
        ("Biography", "text", ["bio", "history", "backstory", "background"]),
        ("Good Attributes", "list", ["strengths", "positive traits", "good traits"]),
        ("Bad Attributes", "list", ["weaknesses", "flaws", "negative traits", "bad traits"]),
        ("Equipment", "list", ["items", "inventory", "weapons", "gear"]),
        ("Other Information", "list", ["other", "notes", "trivia"]),
    ]
    return [SheetField(name, kind, aliases) for name, kind, aliases in rows]


DEFAULT_COLUMNS = {c: c for c in ("thread_id", "position", "author", "character", "text", "title")}

DetectorMode = Literal["off", "flag", "trim", "drop"]


@dataclass
class ImpersonationConfig:
    """Model turns that narrate or speak for the user's character, above all at the end of a post."""

    mode: DetectorMode = _f("flag", "off | flag (count and mark) | trim (cut the impersonating tail) | drop (the post)")


@dataclass
class OOCConfig:
    """Out-of-character text the cleaning rules miss: asides, OOC: mid-post, // asides, @mentions, apologies, brb,
    links, edit notes, and posts that are only such text."""

    mode: DetectorMode = _f("flag", "off | flag | trim (cut the OOC text; a post left empty goes) | drop (the post)")


@dataclass
class DuplicatesConfig:
    """Repeated threads (exact or near, by MinHash) and double posts within a thread; the first copy is kept."""

    mode: Literal["off", "flag", "drop"] = _f("flag", "off | flag | drop (later copies)")
    threshold: float = _f(0.8, "estimated Jaccard similarity of word 5-grams at which two threads or posts are "
                               "copies", exclusive_min=0, max=1)
    num_perm: int = _f(64, "MinHash permutations (more: a closer estimate, slower)", min=16)
    max_words: int = _f(1000, "words of a thread its MinHash is computed on (the start of the thread)", min=50)


@dataclass
class LowEffortConfig:
    """Degenerate posts: very short ones in a literate thread, heavy repetition, mostly not text."""

    mode: Literal["off", "flag", "drop"] = _f("flag", "off | flag | drop (the post)")
    min_words: int = _f(6, "in a literate thread, a post of fewer words is low effort", min=1)
    literate_words: int = _f(40, "a thread whose median post has at least this many words is literate", min=1)
    max_repetition: float = _f(0.5, "a post of 20+ words whose word 3-grams repeat more than this share", min=0, max=1)
    min_letters: float = _f(0.5, "a post whose letters are less than this share of its visible characters", min=0,
                            max=1)


@dataclass
class QualityConfig:
    """Data-quality detectors (group threads); each counted in the manifest under its own name."""

    impersonation: ImpersonationConfig = _f(ImpersonationConfig(), "impersonation of the user's character")
    ooc: OOCConfig = _f(OOCConfig(), "out-of-character text")
    duplicates: DuplicatesConfig = _f(DuplicatesConfig(), "repeated threads and double posts")
    low_effort: LowEffortConfig = _f(LowEffortConfig(), "low-effort and degenerate posts")
    max_genre_share: Optional[float] = _f(None, "cap on the share of threads of any one genre (whole threads left "
                                                "out, seeded); null: no cap", exclusive_min=0, max=1)
    genres: Optional[str] = _f(None, "a YAML lexicon {genre: [words]} added to the shipped one (grouprp/quality/"
                                     "genres.yaml)")
    seed: int = _f(0, "seed of the choice of threads max_genre_share leaves out")


@dataclass
class ScenarioConfig:
    """Where single-character scenarios come from when a scene has no `# Scene:` line."""

    provider: Literal["static", "openai"] = _f("static", "static: the fixed `text`; openai: ask a chat endpoint")
    text: str = _f("", "the scenario used by the static provider")
    base_url: str = _f("", "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    model: str = _f("", "model name sent to the endpoint")
    api_key_env: str = _f("OPENAI_API_KEY", "environment variable holding the API key (never put the key here)")
    cache: Optional[str] = _f(None, "folder caching answers by scene content; default <output_dir>/scenario_cache")
    timeout: float = _f(60.0, "seconds to wait for one request", exclusive_min=0)
    retries: int = _f(3, "retries after a failed request, with exponential backoff", min=0)


TEMPLATE_MODES = {"lyra": "group", "chatml": "group", "alichat": "single_character"}
"""Which mode each prompt format belongs to: group threads, or one character's replies from a script."""

MODE_DEFAULTS = {"group": {"train_on_names": True}, "single_character": {"train_on_names": False}}
"""Defaults that differ by mode (the single-character seed model learned to repeat its name: off there)."""


@dataclass
class DataConfig:
    """Where examples come from and how they are rendered."""

    path: str = _f("", "a data file or a folder of data files")
    format: Optional[Literal["threads", "posts", "sillytavern", "vn_script"]] = _f(
        None, "threads | posts | sillytavern (saved chats) | vn_script; told from each file when absent")
    template: Literal["lyra", "chatml", "alichat"] = _f("lyra", "prompt format: lyra | chatml | alichat")
    columns: dict[str, str] = _f(dict(DEFAULT_COLUMNS), "posts tables: our column name -> the file's column name")
    sheets: Optional[str] = _f(None, "posts tables: a file of character sheets (rows with name, sheet, ...)")
    tsv_quoted: bool = _f(False, "posts tables: .tsv cells may be quoted as in CSV (by default quotes in TSV are "
                                 "text, as most exports write them)")
    sheet_schema: list[SheetField] = _f(default_sheet_schema(), "character-sheet fields, kinds and aliases")
    min_turns: int = _f(6, "drop entries with fewer turns (posts that will be rendered)", min=1)
    window_context: bool = _f(True, "a window of a long thread that would fail the filters (its short tail) starts "
                                    "earlier, the borrowed posts shown as context and not trained; false: dropped")
    min_characters: int = _f(2, "drop entries with fewer distinct posting characters", min=1)
    max_characters: int = _f(7, "drop entries with more distinct posting characters", min=1)
    sequence_len: int = _f(8192, "longest example in tokens; longer threads are cut into windows", min=16)
    train_on_names: Optional[bool] = _f(None, "train the `Name: ` before each reply (default: true, false for alichat)")
    on_error: Literal["raise", "skip"] = _f("raise", "malformed input: raise stops with an error, skip counts it")
    max_post_chars: int = _f(100_000, "a longer post is malformed input (usually a scraping accident)", min=1)
    num_proc: int = _f(2, "processes used to tokenize", min=1)
    character: str = _f("", "alichat: the character the model plays")
    aliases: list[str] = _f([], "alichat: other names of that character in the script")
    user_name: str = _f("", "alichat: the protagonist, whose lines are labelled with user_label")
    user_label: str = _f("{user}", "alichat: how the protagonist is written in prompts")
    history_turns: int = _f(10, "alichat: spoken lines of chat history before each reply", min=0)
    include_narration: bool = _f(False, "alichat: keep narration lines in the chat history")
    card: Optional[str] = _f(None, "alichat: the character card: YAML {name, source, persona, traits}, or a "
                                   "Character Card V1/V2/V3 .json or .png")
    cards: Optional[str] = _f(None, "group threads: a folder of Character Cards (.json, .png) used as the sheets of "
                                    "the characters they name")
    card_sheet: dict[str, str] = _f(
        {"description": "Biography", "personality": "Personality", "scenario": "Scenario"},
        "group threads: card field -> sheet key (a data.sheet_schema field or alias; other keys become "
        "`Key: value` items of Other Information)")
    scenario: ScenarioConfig = _f(ScenarioConfig(), "alichat: scenario provider for scenes without `# Scene:`")
    quality: QualityConfig = _f(QualityConfig(), "data-quality detectors for group threads")

    @property
    def mode(self) -> str:
        """`group` (forum threads) or `single_character` (a script), from the template."""
        return TEMPLATE_MODES[self.template]


@dataclass
class ModelConfig:
    """The base model and how it is loaded."""

    base: str = _f("", "HF model id or local folder")
    tokenizer: Optional[str] = _f(None, "HF id or folder of the tokenizer; default: model.base")
    load_in_8bit: bool = _f(True, "load the base weights in 8 bits (bitsandbytes LLM.int8)")
    attn_implementation: str = _f("sdpa", "attention kernel: sdpa | eager | flash_attention_2")
    trust_remote_code: bool = _f(False, "allow model code from the hub; off unless you trust the repository")
    random_init: Optional[dict[str, Any]] = _f(
        None, "build a random model from these transformers config values instead of loading weights (demos, tests)")


@dataclass
class LoraSettings:
    """The LoRA adapter."""

    r: int = _f(16, "adapter rank", min=1)
    alpha: int = _f(32, "scaling numerator (scale = alpha / r)", min=1)
    dropout: float = _f(0.05, "dropout on the adapter input", min=0, max=1)
    target_modules: Union[str, list[str]] = _f("all-linear", "all-linear (every linear layer but lm_head) or names")


@dataclass
class TrainConfig:
    """Optimization, batching and checkpointing."""

    global_batch_size: int = _f(12, "samples per optimizer step = micro batch x accumulation x world size", min=1)
    micro_batch_size: int = _f(1, "samples per forward pass on one device", min=1)
    epochs: float = _f(3, "passes over the training split", exclusive_min=0)
    max_steps: int = _f(-1, "stop after this many optimizer steps (-1: run all epochs)", min=-1)
    learning_rate: float = _f(4.0e-6, "peak learning rate", exclusive_min=0)
    lr_scheduler: str = _f("cosine", "transformers scheduler name: cosine | linear | constant | ...")
    warmup_ratio: float = _f(0.0, "fraction of steps spent warming up", min=0, max=0.999)
    weight_decay: float = _f(0.0, "AdamW weight decay", min=0)
    max_grad_norm: float = _f(1.0, "gradient clipping norm", min=0)
    deepspeed: Optional[str] = _f(None, "DeepSpeed JSON, e.g. configs/zero2.json; none: plain PyTorch")
    gradient_checkpointing: bool = _f(True, "recompute activations in backward (non-reentrant) to save memory")
    bf16: bool = _f(True, "bfloat16 mixed precision")
    packing: bool = _f(False, "pack several examples into each row of up to data.sequence_len, isolated from each "
                              "other; global_batch_size then counts rows")
    loss: Literal["chunked", "full"] = _f("chunked", "chunked: LM head and cross-entropy only at trained positions, "
                                                     "a chunk at a time (Liger's fused kernel on GPU when installed); "
                                                     "full: the model's own loss over all logits")
    resume: str = _f("auto", "auto: latest checkpoint in output_dir | never | a checkpoint folder")
    seed: int = _f(42, "seed for data order, splits and adapter init")
    stop_after_steps: int = _f(0, "end this session after N optimizer steps with a checkpoint, keeping the full "
                                  "run's schedule (time-limited jobs; resume with train.resume=auto)", min=0)
    save_steps: int = _f(0, "save a checkpoint every N steps (0: at the end of every epoch)", min=0)
    save_total_limit: int = _f(2, "checkpoints kept (oldest deleted)", min=1)
    logging_steps: int = _f(1, "log loss every N steps", min=1)
    report_to: list[str] = _f(["tensorboard"], "tensorboard, wandb, or both")


@dataclass
class EvalConfig:
    """The held-out split."""

    split: Union[float, str] = _f(0.02, "fraction of examples held out, or a path to a data file of its own")
    steps: int = _f(0, "evaluate every N steps (0: at the end of every epoch)", min=0)


@dataclass
class Config:
    """A grouprp run."""

    output_dir: str = _f("runs/grouprp", "everything a run writes: dataset, manifest, checkpoints, adapter")
    data: DataConfig = _f(DataConfig(), "input data and prompt format")
    model: ModelConfig = _f(ModelConfig(), "base model")
    lora: LoraSettings = _f(LoraSettings(), "LoRA adapter")
    train: TrainConfig = _f(TrainConfig(), "training")
    eval: EvalConfig = _f(EvalConfig(), "evaluation")

    @property
    def tokenizer_path(self) -> str:
        return self.model.tokenizer or self.model.base


def load_config(path: Union[str, Path, None], overrides: typing.Sequence[str] = ()) -> Config:
    """Read a YAML config, apply `a.b=value` overrides, and return a validated Config."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
        except UnicodeDecodeError as exc:
            line = Path(path).read_bytes()[:exc.start].count(b"\n") + 1
            raise ConfigError(f"{path}:{line}: not UTF-8 text; re-save the config as UTF-8") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a config is a mapping of keys, got {type(raw).__name__}")
    for item in overrides:
        apply_override(raw, item)
    cfg = _build(Config, raw, "")
    _check(cfg)
    return cfg


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set `a.b.c=value` in a nested dict; the value is parsed as YAML (`1e-5`, `true`, `[a, b]`)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"{item!r}: an override is key=value with a dotted key, e.g. train.learning_rate=1e-5")
    node = raw
    parts = key.strip().split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(parts[:depth + 1])}: is a value, not a section; cannot set {key}")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        node[parts[-1]] = value


def to_dict(cfg: Any) -> Any:
    """A plain, YAML-safe copy of a config (for saving beside the adapter and for fingerprints)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, list):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def describe(cls: type = Config, prefix: str = "") -> list[tuple[str, str, Any]]:
    """(dotted key, help, default) for every leaf field: the documentation of the config."""
    rows = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            rows.extend(describe(hint, key + "."))
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((key, f.metadata.get("help", ""), to_dict(default)))
    return rows


def _build(cls: type, raw: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "config"
    if (isinstance(raw, str) or raw is False) and "mode" in {f.name for f in dataclasses.fields(cls)}:
        raw = {"mode": raw}  # `data.quality.ooc=trim` is short for {mode: trim}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {_show(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1, cutoff=0.6)
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; known keys: {', '.join(fields)}"
            raise ConfigError(f"{prefix}{key}: unknown key{hint}")
    values = {}
    for name, f in fields.items():
        if name in raw:
            values[name] = _coerce(hints[name], raw[name], f"{prefix}{name}", f.metadata)
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str, meta: typing.Mapping[str, Any]) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(option, value, key, meta)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0] if len(options) == 1 else ConfigError(
            f"{key}: expected {' or '.join(_type_name(o) for o in options)}, got {_show(value)}")
    if origin is Literal:
        if value is False and "off" in args:
            value = "off"  # YAML 1.1 reads a bare `off` as false
        if value not in args:
            raise ConfigError(f"{key}: must be one of {', '.join(map(str, args))}; got {_show(value)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {_show(value)}")
        return [_coerce(args[0], v, f"{key}[{i}]", {}) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {_show(value)}")
        return {str(k): _coerce(args[1], v, f"{key}.{k}", {}) for k, v in value.items()}
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_show(value)}")
        return value
    if hint is float and isinstance(value, str) and _SCIENTIFIC.match(value.strip()):
        value = float(value)  # YAML 1.1 reads `1e-5` (no dot) as a string; everybody means the number
    if hint in (int, float):
        ok = isinstance(value, int) if hint is int else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            raise ConfigError(f"{key}: expected {_type_name(hint)}, got {_show(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: must be a finite number, got {value}")
        _check_range(key, value, meta)
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_show(value)}")
        return value
    raise TypeError(f"config field {key} has an unsupported type {hint}")


def _check_range(key: str, value: float, meta: typing.Mapping[str, Any]) -> None:
    if "min" in meta and value < meta["min"]:
        raise ConfigError(f"{key}: must be at least {meta['min']}, got {value}")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(f"{key}: must be at most {meta['max']}, got {value}")
    if "exclusive_min" in meta and value <= meta["exclusive_min"]:
        raise ConfigError(f"{key}: must be greater than {meta['exclusive_min']}, got {value}")


def _check(cfg: Config) -> None:
    """Rules that involve more than one field."""
    if not cfg.output_dir.strip():
        raise ConfigError("output_dir: required; the folder a run writes everything to (e.g. output_dir=runs/mine)")
    if Path(cfg.output_dir).exists() and not Path(cfg.output_dir).is_dir():
        raise ConfigError(f"output_dir: {cfg.output_dir} is a file; name a folder")
    d = cfg.data
    for key, value in (("data.sheets", d.sheets), ("data.card", d.card), ("train.deepspeed", cfg.train.deepspeed),
                       ("data.quality.genres", d.quality.genres)):
        if value and not Path(value).is_file():
            raise ConfigError(f"{key}: {value} not found")
    unknown_card_fields = set(d.card_sheet) - set(TAVERN_FIELDS[1:])
    if unknown_card_fields:
        raise ConfigError(f"data.card_sheet.{sorted(unknown_card_fields)[0]}: not a card field; one of "
                          f"{', '.join(TAVERN_FIELDS[1:])}")
    if d.cards and not Path(d.cards).is_dir():
        raise ConfigError(f"data.cards: {d.cards} is not a folder (a folder of character cards, .json or .png)")
    if isinstance(cfg.eval.split, str) and not Path(cfg.eval.split).exists():
        raise ConfigError(f"eval.split: {cfg.eval.split} not found (a fraction such as 0.02, or a path to held-out "
                          "data)")
    if not d.path:
        raise ConfigError("data.path: required; a data file or folder (e.g. data.path=data/sample/threads.jsonl)")
    if d.min_characters > d.max_characters:
        raise ConfigError(f"data.min_characters: {d.min_characters} is above data.max_characters "
                          f"({d.max_characters}); no entry could pass")
    unknown_columns = set(d.columns) - set(DEFAULT_COLUMNS)
    if unknown_columns:
        raise ConfigError(f"data.columns.{sorted(unknown_columns)[0]}: unknown column role; "
                          f"known: {', '.join(DEFAULT_COLUMNS)}")
    d.columns = {**DEFAULT_COLUMNS, **d.columns}
    kinds = {f.name for f in d.sheet_schema}
    if len(kinds) != len(d.sheet_schema) or "Character Name" not in kinds or "Other Information" not in kinds:
        raise ConfigError("data.sheet_schema: field names must be unique and include "
                          "'Character Name' and 'Other Information'")
    single = d.mode == "single_character"
    if (d.format == "vn_script") != single and d.format is not None:
        raise ConfigError(f"data.template: visual-novel scripts (data.format: vn_script) go with a single-character "
                          f"template ({_templates('single_character')}), and those only with scripts")
    if single and not d.character:
        raise ConfigError(f"data.character: required with template {d.template} (the character the model plays)")
    if single and not d.card:
        raise ConfigError(f"data.card: required with template {d.template} (a YAML card: name, source, persona, "
                          "traits; or a Character Card .json or .png)")
    if d.train_on_names is None:
        d.train_on_names = MODE_DEFAULTS[d.mode]["train_on_names"]
    if not 0 <= cfg.train.warmup_ratio <= 1:
        raise ConfigError("train.warmup_ratio: must be between 0 and 1")
    if isinstance(cfg.eval.split, float) and not 0 <= cfg.eval.split < 1:
        raise ConfigError(f"eval.split: a fraction must be in [0, 1), got {cfg.eval.split}")
    unknown_reports = set(cfg.train.report_to) - {"tensorboard", "wandb", "none"}
    if unknown_reports:
        raise ConfigError(f"train.report_to: unknown logger {sorted(unknown_reports)[0]}; "
                          "use tensorboard, wandb or none")


def _templates(mode: str) -> str:
    return ", ".join(name for name, m in TEMPLATE_MODES.items() if m == mode)


def _type_name(hint: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    if value is None:
        return "nothing (null)"
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (dict, list)) else type(value).__name__
