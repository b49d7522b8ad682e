"""A finished run read back for inference, and generation that stops where the trained format ends a turn.

`load_run` reads what training saved beside the adapter (`grouprp.json`, `config.yaml`, the tokenizer); the
format comes from the name in `grouprp.json` through the same code that rendered the training data, never a
second copy of the template. `generate` samples a turn with transformers' stop strings and returns it without the
stop text; `StopFilter` does the same for text streamed to a terminal, holding back what could still become a stop
string.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import yaml

from grouprp.config import Config, ConfigError, load_config
from grouprp.formats import Format
from grouprp.modes import Mode, get_mode
from grouprp.schema import DataError, Example
from grouprp.tokenize import Encoder


RUN_INFO = "grouprp.json"
ADAPTER = "adapter_model.safetensors"
CARD_COPY = "card.yaml"  # single-character runs keep their card beside the adapter


@dataclass
class Sampling:
    """Sampler settings. The defaults suit Mistral-Nemo finetunes: Mistral recommends a low temperature (0.3) for
    Nemo; roleplay wants a little more variety, and a little min_p keeps the tail out."""

    temperature: float = 0.5
    min_p: float = 0.05
    top_p: float = 1.0
    max_new_tokens: int = 400
    repetition_penalty: float = 1.0
    sequence_bias: Optional[dict] = None  # Python API only: transformers' sequence_bias, {(token ids...): bias}

    def generate_kwargs(self) -> dict[str, Any]:
        sample = self.temperature > 0
        kwargs = {"do_sample": sample, "temperature": self.temperature if sample else None,
                  "min_p": self.min_p if sample else None, "top_p": self.top_p if sample else None,
                  "max_new_tokens": self.max_new_tokens, "repetition_penalty": self.repetition_penalty}
        if self.sequence_bias:
            kwargs["sequence_bias"] = self.sequence_bias
        return kwargs


@dataclass
class Run:
    """A run folder: the adapter, the tokenizer, the resolved config and grouprp.json."""

    path: Path
    cfg: Config
    info: dict[str, Any]
    eval_split: Any = 0.0  # training's eval.split, as written (a fraction, or a path)

    @property
    def base_model(self) -> str:
        return self.info["base_model"]

    @property
    def load_in_8bit(self) -> bool:
        return bool(self.info.get("load_in_8bit"))

    def mode(self) -> Mode:
        return get_mode(self.cfg)

    def format(self) -> Format:
        return self.mode().format


def load_run(path: str | Path) -> Run:
    """Read a run folder; anything missing is one error naming the file."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: no such run folder (the output_dir of a finished training run)")
    info_path = path / RUN_INFO
    if not info_path.is_file():
        raise DataError(f"{info_path}: not found; training writes it beside the adapter when it finishes, so {path} "
                        "is not a finished run")
    if not (path / ADAPTER).is_file() or not (path / "adapter_config.json").is_file():
        raise DataError(f"{path / ADAPTER}: no adapter in this run folder; training writes it when it finishes")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        info["template"], info["base_model"]
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{info_path}: not the grouprp.json training writes (template, base_model, ...)") from None
    overrides = ["train.deepspeed=null", "eval.split=0"]  # not needed to use the run, and may not exist here
    card = next((path / name for name in (CARD_COPY, "card.json", "card.png") if (path / name).is_file()), None)
    if card is not None:
        overrides.append(f"data.card={card}")
    try:
        cfg = load_config(path / "config.yaml", overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path / 'config.yaml'}: {exc}") from None
    if cfg.data.template != info["template"]:
        raise DataError(f"{info_path}: template {info['template']!r} but config.yaml says {cfg.data.template!r}")
    written = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8-sig")) or {}
    return Run(path, cfg, info, (written.get("eval") or {}).get("split", 0.0))


def load_tokenizer(run: Run):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(run.path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(run: Run, load_in_8bit: Optional[bool] = None, adapter: bool = True):
    """The run's base (8-bit when the run was, unless told otherwise; bf16 on GPU, fp32 on CPU) with its adapter."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    eight_bit = run.load_in_8bit if load_in_8bit is None else load_in_8bit
    on_gpu = torch.cuda.is_available()
    kwargs: dict[str, Any] = dict(dtype=torch.bfloat16 if on_gpu else torch.float32,
                                  attn_implementation=run.cfg.model.attn_implementation,
                                  trust_remote_code=run.cfg.model.trust_remote_code,
                                  device_map={"": 0 if on_gpu else "cpu"})
    if eight_bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    try:
        model = AutoModelForCausalLM.from_pretrained(run.base_model, **kwargs)
    except OSError as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{run.path / RUN_INFO}: cannot load the base model {run.base_model!r} ({first_line})") from None
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(run.path))
    model.eval()
    return model


class StopFilter:
    """Text streamed in pieces, let out only once it cannot be the start of a stop string (or the turn's closing
    marker at the very end); after a stop string nothing more comes out."""

    def __init__(self, stops: Sequence[str], close: str = "") -> None:
        self.stops = [s for s in stops if s]
        self.close = close
        # held back while the text ends with the start of one of these: a stop, the close, the close then a stop
        self.holds = [*self.stops, *([close, *(close + s for s in self.stops)] if close else [])]
        self.pending = ""
        self.stopped = False
        self.stopped_by: Optional[str] = None  # the stop string that ended the text

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.pending += piece
        found = [(i, s) for s in self.stops for i in [self.pending.find(s)] if i >= 0]
        if found:
            cut, self.stopped_by = min(found)
            self.stopped = True
            out, self.pending = self.pending[:cut], ""
            return out.removesuffix(self.close)
        keep = max((k for s in self.holds for k in range(1, len(s) + 1) if self.pending.endswith(s[:k])), default=0)
        out, self.pending = self.pending[:len(self.pending) - keep], self.pending[len(self.pending) - keep:]
        return out

    def finish(self) -> str:
        out, self.pending = self.pending, ""
        return out.removesuffix(self.close)


@dataclass(frozen=True)
class Generated:
    text: str
    stopped_by: Optional[str]  # the stop string that ended it (None: EOS or the token limit)
    new_tokens: Optional[int] = None  # how many tokens the model generated (not counted when streaming)


def generate(model, tokenizer, prompt: Example, fmt: Format, sampling: Sampling,
             on_text: Optional[Callable[[str], None]] = None, extra_stops: Sequence[str] = ()) -> Generated:
    """One turn continuing `prompt`, cut at the format's stop strings, `extra_stops` or EOS; the stop text is never
    returned or streamed. The prompt is encoded as in training (BOS, and control tokens only where the format put
    them)."""
    import torch
    from transformers import TextIteratorStreamer

    tokens = Encoder(tokenizer).encode([replace(prompt, trained=(), owners=(), append_eos=False)])[0]
    input_ids = torch.as_tensor(tokens.input_ids, dtype=torch.long).unsqueeze(0).to(model.device)
    stop_strings = [*fmt.stop_strings, *extra_stops]
    kwargs = dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), tokenizer=tokenizer,
                  stop_strings=stop_strings or None, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id, **sampling.generate_kwargs())
    stops = StopFilter([*stop_strings, *([tokenizer.eos_token] if tokenizer.eos_token else [])], fmt.close)
    if on_text is None:
        with torch.no_grad():
            output = model.generate(**kwargs)
        new = output[0, input_ids.shape[1]:]
        text = tokenizer.decode(new, skip_special_tokens=False)
        return Generated(stops.feed(text) + stops.finish(), stops.stopped_by, len(new))
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=False)
    worker = threading.Thread(target=lambda: _generate_quietly(model, kwargs, streamer), daemon=True)
    worker.start()
    pieces = []
    for piece in streamer:
        shown = stops.feed(piece)
        if shown:
            on_text(shown)
            pieces.append(shown)
    rest = stops.finish()
    if rest:
        on_text(rest)
        pieces.append(rest)
    worker.join()
    return Generated("".join(pieces), stops.stopped_by)


def _generate_quietly(model, kwargs: dict, streamer) -> None:
    import torch

    with torch.no_grad():
        model.generate(**kwargs, streamer=streamer)
