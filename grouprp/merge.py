"""`grouprp merge RUN_DIR --out DIR`: the adapter folded into its base, loadable without PEFT.

The base is loaded unquantized (bf16 on a GPU, fp32 on the CPU), never in 8 bits: LoRA's low-rank update is added
to the full-precision weights by PEFT's own `merge_and_unload`. The folder gets safetensors weights, the tokenizer,
a generation config that carries the format's stop strings and the sampler defaults, and the model card.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from grouprp.inference import Run, Sampling
from grouprp.schema import DataError

log = logging.getLogger("grouprp")


def quantized_base(run: Run) -> str:
    """Why the run's base cannot take a merge (its weights are stored quantized), or an empty string."""
    config = Path(run.base_model) / "config.json"
    if not config.is_file():
        return ""
    quantization = json.loads(config.read_text()).get("quantization_config") or {}
    if quantization.get("load_in_8bit") or quantization.get("load_in_4bit") or quantization.get("quant_method"):
        return (f"{run.base_model} stores its weights quantized ({quantization.get('quant_method', 'bitsandbytes')}); "
                "merging would round the adapter's update into them. Merge into the original 16-bit base (set "
                "base_model in grouprp.json to it)")
    return ""


def merge(run: Run, out: Path, sampling: Sampling) -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    problem = quantized_base(run)
    if problem:
        raise DataError(f"merge: {problem}")
    if out.exists() and any(out.iterdir()):
        raise DataError(f"--out: {out} is not empty; name a new folder")
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    base = AutoModelForCausalLM.from_pretrained(run.base_model, dtype=dtype,
                                                trust_remote_code=run.cfg.model.trust_remote_code)
    merged = PeftModel.from_pretrained(base, str(run.path)).merge_and_unload()
    merged.save_pretrained(str(out), safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(str(run.path))
    tokenizer.save_pretrained(str(out))
    fmt = run.format()
    generation = GenerationConfig.from_model_config(merged.config)
    generation.update(stop_strings=list(fmt.stop_strings) or None, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id,
                      **{k: v for k, v in sampling.generate_kwargs().items() if v is not None and k != "sequence_bias"})
    generation.save_pretrained(str(out))
    card = (run.path / "README.md").read_text() if (run.path / "README.md").is_file() else ""
    (out / "README.md").write_text(card.replace("library_name: peft\n", "") + _merged_note(run, dtype))
    log.info("merged %s into %s -> %s", run.path, run.base_model, out)
    return out


def _merged_note(run: Run, dtype) -> str:
    return (f"\n## Merged\n\nThe LoRA adapter of this run merged into `{run.base_model}` ({str(dtype).split('.')[-1]}) "
            "with `grouprp merge`: load it with `AutoModelForCausalLM.from_pretrained`, no PEFT needed. "
            "`generation_config.json` carries the stop strings; pass `tokenizer=` to `generate` so they apply.\n")
