"""A few optimizer steps of a Mistral-Nemo-12B-shaped model with only a few layers, through the real `run(cfg)`.

    python benchmarks/gpu_step.py --layers 1 2 4 [--sequence-len 8192] [--steps 4] [--tokenizer PATH]
    python benchmarks/gpu_step.py --tiny --layers 1 2      # CPU, a tiny shape (tests/test_benchmarks.py)

Random weights with Nemo's layer shapes (hidden 5120, 32 heads, 8 KV heads, head_dim 128, intermediate 14336,
vocabulary 131,072), loaded in 8 bits with LoRA on every linear layer under DeepSpeed ZeRO-2 (one process), on
generated threads windowed at `--sequence-len`; each layer count in a fresh process. It reports the peak GPU memory
(torch's allocator) per layer count, the gain per extra layer (what each of Nemo's 40 layers adds), trained tokens
per second, and the loss path (`train.loss`: chunked, full or liger). On the CPU (no GPU) it reports peak resident
memory instead. The tokenizer must have Nemo's vocabulary: by default the one mistral-common ships
(`pip install mistral-common`), or `--tokenizer` a folder holding it. Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
NEMO = {"model_type": "mistral", "hidden_size": 5120, "intermediate_size": 14336, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 128, "rms_norm_eps": 1e-5, "rope_theta": 1_000_000.0}
TINY = {"model_type": "mistral", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
        "num_key_value_heads": 2}


def nemo_tokenizer(folder: Path) -> Path:
    """Mistral-Nemo's tokenizer from mistral-common, saved as a Hugging Face tokenizer in `folder`."""
    import mistral_common
    from transformers.integrations.mistral.tokenizer import convert_tekken_tokenizer

    convert_tekken_tokenizer(str(Path(mistral_common.__file__).parent / "data" / "tekken_240718.json")) \
        .save_pretrained(str(folder))
    return folder


def one(args) -> None:
    """In a fresh process: train `args.steps` steps with `args.layers[0]` layers and print one JSON line."""
    import torch
    from transformers import TrainerCallback

    from grouprp.config import load_config
    from grouprp.logs import setup_logging
    from grouprp.train import run

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from prepare_speed import generate

    setup_logging()
    work = Path(args.work)
    data = work / "threads.jsonl"
    if not data.exists():  # posts sized so that a window holds a dozen or more of them
        generate(data, threads=24, posts=40, words=(args.sequence_len // 55, args.sequence_len // 27))
    layers = args.layers[0]
    shape = {**(TINY if args.tiny else NEMO), "num_hidden_layers": layers,
             "max_position_embeddings": max(args.sequence_len, 4096)}
    gpu = torch.cuda.is_available()
    cfg = load_config(ROOT / "configs" / "lyra_lora.yaml", [
        f"output_dir={work / f'run-{layers}'}", f"data.path={data}", f"data.sequence_len={args.sequence_len}",
        f"model.base={work / f'base-{layers}'}", f"model.tokenizer={args.tokenizer}", "eval.split=0",
        f"model.random_init={json.dumps(shape)}", f"train.max_steps={args.steps}", "train.global_batch_size=1",
        "train.report_to=[none]", "train.save_steps=100000", f"train.bf16={str(gpu).lower()}",
        f"train.loss={args.loss}", f"model.attn_implementation={args.attention}"])

    class Measure(TrainerCallback):
        def on_train_begin(self, *a, **kw):
            if gpu:
                torch.cuda.reset_peak_memory_stats()

        def on_train_end(self, args_, state, *a, **kw):
            self.history = state.log_history

    measure = Measure()
    run(cfg, callbacks=[measure])
    rates = [h["trained_tokens_per_second"] for h in measure.history if "trained_tokens_per_second" in h]
    manifest = json.loads((work / f"run-{layers}" / "manifest.json").read_text())
    print(json.dumps({
        "layers": layers, "device": torch.cuda.get_device_name() if gpu else "cpu",
        "peak_gb": (torch.cuda.max_memory_allocated() if gpu else
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**30,
        "memory": "GPU, torch allocator peak" if gpu else "CPU, peak resident memory",
        "trained_tokens_per_second": rates[-1] if rates else None,
        "tokens_per_example": manifest["stats"]["tokens_per_example"].get("mean"),
        "loss": json.loads((work / f"run-{layers}" / "grouprp.json").read_text()).get("loss_path"),
        "steps": args.steps, "sequence_len": args.sequence_len}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--sequence-len", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--loss", choices=["chunked", "full"], default="chunked")
    parser.add_argument("--attention", default="sdpa", help="model.attn_implementation (flash_attention_2 on GPU)")
    parser.add_argument("--tiny", action="store_true", help="a tiny shape and the bundled tokenizer (CPU)")
    parser.add_argument("--tokenizer", help="a tokenizer folder with Nemo's vocabulary (default: mistral-common's)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one(args)
    with tempfile.TemporaryDirectory() as work:
        if args.tiny:
            args.tokenizer = args.tokenizer or str(ROOT / "assets" / "tokenizer")
        elif not args.tokenizer:
            args.tokenizer = str(nemo_tokenizer(Path(work) / "tokenizer"))
        results = []
        for layers in args.layers:
            command = [sys.executable, __file__, "--one", "--work", work, "--layers", str(layers),
                       "--sequence-len", str(args.sequence_len), "--steps", str(args.steps), "--loss", args.loss,
                       "--attention", args.attention, "--tokenizer", args.tokenizer, *(["--tiny"] if args.tiny else [])]
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            if done.returncode != 0:
                sys.exit(f"{layers} layer(s) failed:\n{done.stderr[-3000:]}")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    for r in results:
        print(f"{r['layers']:2} layer(s) on {r['device']}: peak {r['peak_gb']:7.2f} GiB ({r['memory']}), "
              f"{r['trained_tokens_per_second'] or 0:9,.0f} trained tokens/s, loss {r['loss']}, "
              f"{r['tokens_per_example']:,.0f} tokens per example, sequence_len {r['sequence_len']:,}")
    if len(results) > 1:
        first, last = results[0], results[-1]
        per_layer = (last["peak_gb"] - first["peak_gb"]) / (last["layers"] - first["layers"])
        print(f"each extra layer adds {per_layer:.3f} GiB")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
