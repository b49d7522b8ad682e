"""The memory planner against measurement: real training steps on the CPU, the planner's peak beside each.

    python benchmarks/plan_check.py [--shapes quick|all|NAME] [--steps 2] [--sequence-len N] [--glibc-default]
                                    [--json FILE]

Each shape is a random Mistral-architecture model (built from a config, never downloaded) trained through the real
`run(cfg)` for a few optimizer steps on the sample threads: 8-bit and not, with and without gradient
checkpointing, one rank and two (deepspeed, ZeRO-2), at a sequence length and vocabulary where the training
tensors, not the libraries, decide the memory. Measured: each rank's peak resident memory (ru_maxrss) less its
resident memory once every library is imported, before the model loads; the planner is run for the same config
and world size on `device=cpu` (fp32, as the CPU trains). The dataset and the random base are made beforehand in
another process, so neither is counted. Results go in docs/benchmarks.md; tests/test_plan.py runs the quick set.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BASE = {"model_type": "mistral", "num_attention_heads": 8, "num_key_value_heads": 4, "max_position_embeddings": 4096}
SHAPES = {
    "wide 8-bit, checkpointing": dict(hidden=768, ffn=2048, layers=4, vocab=32768, seq=2048, bits8=True, gc=True,
                                      world=1, loss="chunked"),
    "wide 8-bit, no checkpointing": dict(hidden=768, ffn=2048, layers=4, vocab=32768, seq=2048, bits8=True, gc=False,
                                         world=1, loss="chunked"),
    "wide fp32, full loss": dict(hidden=768, ffn=2048, layers=4, vocab=32768, seq=2048, bits8=False, gc=True,
                                 world=1, loss="full"),
    "deep 8-bit, 2 ranks": dict(hidden=512, ffn=1536, layers=8, vocab=32768, seq=2048, bits8=True, gc=False, world=2,
                                loss="chunked"),
    "big vocabulary 8-bit, 2 ranks": dict(hidden=512, ffn=1536, layers=2, vocab=65536, seq=2048, bits8=True,
                                          gc=True, world=2, loss="full"),
    "fp32, no checkpointing, 2 ranks": dict(hidden=1024, ffn=2816, layers=4, vocab=16384, seq=2048, bits8=False,
                                            gc=False, world=2, loss="chunked"),
}
# glibc keeps freed blocks for reuse once large ones have been freed (its mmap threshold rises to 32 MiB), so
# resident memory would count the allocator's slack, which no planner predicts; with a fixed threshold every
# large tensor is its own mapping, returned when freed, and the peak resident memory is the peak of live tensors
MALLOC = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
QUICK = ("wide 8-bit, no checkpointing", "wide fp32, full loss", "deep 8-bit, 2 ranks")

MEASURE = textwrap.dedent('''
    import json, os, resource, sys
    import accelerate, bitsandbytes, datasets, deepspeed, peft, torch, transformers  # everything run() imports
    import transformers.trainer
    from grouprp.config import load_config
    from grouprp.train import run

    def resident():
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    argv = [a for a in sys.argv[1:] if not a.startswith("--local_rank")]
    before = resident()
    run(load_config(argv[0], argv[2:]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with open(f"{argv[1]}-rank{os.environ.get('RANK', '0')}.json", "w") as handle:
        json.dump({"before": before, "peak": peak}, handle)
''')


def config_lines(shape: dict, work: Path, steps: int) -> list[str]:
    init = {**BASE, "hidden_size": shape["hidden"], "intermediate_size": shape["ffn"],
            "num_hidden_layers": shape["layers"], "vocab_size": shape["vocab"]}
    return [f"output_dir={work}", f"model.base={work / 'base'}", f"model.random_init={json.dumps(init)}",
            f"model.load_in_8bit={str(shape['bits8']).lower()}", f"data.sequence_len={shape['seq']}",
            f"train.gradient_checkpointing={str(shape['gc']).lower()}", f"train.loss={shape['loss']}",
            "train.micro_batch_size=1", f"train.global_batch_size={shape['world']}", f"train.max_steps={steps}",
            "train.packing=true", "data.min_turns=2",
            "train.save_steps=100000", "eval.split=0", "train.report_to=[none]", "lora.dropout=0.05", "lora.r=8"]


def measure(name: str, shape: dict, steps: int, malloc: bool = True) -> dict:
    from grouprp.config import load_config
    from grouprp.plan import estimate, model_shape

    with tempfile.TemporaryDirectory(prefix="plan-check-") as tmp:
        work = Path(tmp)
        overrides = config_lines(shape, work, steps)
        cfg = load_config(ROOT / "configs" / "demo.yaml", overrides)
        # the dataset and the random base first, in another process: neither is what training holds
        prepare = ("from grouprp.config import load_config; from grouprp.prepare import prepare, load_tokenizer; "
                   "from grouprp.train import _build_random_base; import sys; "
                   "cfg = load_config(sys.argv[1], sys.argv[2:]); t = load_tokenizer(cfg); prepare(cfg, t); "
                   "_build_random_base(cfg, t)")
        subprocess.run([sys.executable, "-c", prepare, str(ROOT / "configs" / "demo.yaml"), *overrides], cwd=ROOT,
                       check=True, capture_output=True)
        script = work / "measure.py"
        script.write_text(MEASURE)
        out = work / "measured"
        if shape["world"] == 1:
            command = [sys.executable, str(script), str(ROOT / "configs" / "demo.yaml"), str(out), *overrides]
        else:
            command = [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", str(shape["world"]),
                       "--master_port", str(29400 + os.getpid() % 500), str(script),
                       str(ROOT / "configs" / "demo.yaml"), str(out), *overrides]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "TOKENIZERS_PARALLELISM": "false", **(MALLOC if malloc else {})})
        if done.returncode != 0:
            raise RuntimeError(f"{name}: exit {done.returncode}\n{done.stderr[-3000:]}")
        ranks = [json.loads(p.read_text()) for p in sorted(work.glob("measured-rank*.json"))]
        measured = max(r["peak"] - r["before"] for r in ranks)
        planned = estimate(cfg, model_shape(cfg), shape["world"], device="cpu")
    return {"shape": name, **shape, "measured": measured, "planned": planned.peak,
            "error": planned.peak / measured - 1, "items": {i.name: i.bytes for i in planned.items}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", choices=["quick", "all", *SHAPES], default="all", help="quick, all or one")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--sequence-len", type=int, help="instead of each shape's own (2,048)")
    parser.add_argument("--vocab", type=int, help="instead of each shape's own vocabulary size")
    parser.add_argument("--glibc-default", action="store_true", help="without the fixed mmap threshold (see above)")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    names = {"quick": QUICK, "all": tuple(SHAPES)}.get(args.shapes, (args.shapes,))
    changed = {key: value for key, value in (("seq", args.sequence_len), ("vocab", args.vocab)) if value}
    results = [measure(name, {**SHAPES[name], **changed}, args.steps, malloc=not args.glibc_default) for name in names]
    print("| shape | hidden x layers, vocabulary | 8-bit | checkpointing | loss | ranks | measured MiB | planned MiB "
          "| error |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['shape']} | {r['hidden']} x {r['layers']}, {r['vocab']:,} | {'yes' if r['bits8'] else 'no'} | "
              f"{'yes' if r['gc'] else 'no'} | {r['loss']} | {r['world']} | {r['measured'] / 2**20:,.0f} | "
              f"{r['planned'] / 2**20:,.0f} | {r['error']:+.1%} |")
    worst = max(results, key=lambda r: abs(r["error"]))
    print(f"worst error: {worst['error']:+.1%} ({worst['shape']})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
