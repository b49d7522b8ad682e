"""grouprp against TRL's SFTTrainer on the same generated corpus, tiny model and tokenizer, in one run (CPU).

    pip install -e .[bench]       # TRL: a benchmark-only extra, never a dependency of grouprp
    python benchmarks/vs_trl.py [--threads 300] [--posts 40 | --posts 6 80] [--sequence-len 2048] [--steps 8]

Both train a LoRA on a tiny random Mistral-architecture model (fp32, gradient checkpointing, packing, global
batch 4 of micro batches of 1) for `--steps` optimizer steps on the bundled tokenizer:
- grouprp: `prepare` (windows of long threads, labels on the model's turns) and `run(cfg)` with `train.packing`
  and the chunked loss;
- TRL: the same threads, cleaned by grouprp (TRL does not clean forum text, so it is given what grouprp trains
  on), as conversations (system, user and assistant turns `Name: text`) under a chat template that renders the
  lyra format with `{% generation %}` marks, with `assistant_only_loss`, `max_length`, its own loss and its
  own BFD packing, run twice: `bfd` (the default: it truncates each thread at max_length) and `bfd_split` (the
  overflow becomes sequences of its own, cut wherever max_length falls).
`--posts MIN MAX` gives each thread a number of posts drawn from that range, so that some threads fit one row.
Figures: data preparation tokens/s (grouprp: reading, cleaning, rendering, tokenizing, windowing, writing; TRL: its
dataset processing, template, tokenization and packing), trained tokens kept, token efficiency (real tokens over
rows x sequence_len), trained tokens per second over the steps (the same estimate for both: the trained tokens of
the rows a step consumes on average, over the training time), and the peak resident memory of the training
process. Results with the command go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "assets" / "tokenizer"
SHAPE = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2}
STRATEGIES = ("bfd", "bfd_split")
"""TRL's packing: its default truncates each conversation at max_length; bfd_split keeps the overflow as
sequences of their own, cut wherever max_length falls (mid-post, with no system prompt)."""
LYRA_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{ '[INST]model\n' }}{% generation %}"
    "{{ message['content'] + '[/INST]' }}{% if loop.last %}{{ '<|im_end|>' }}{% endif %}{% endgeneration %}"
    "{% else %}{{ '[INST]' + message['role'] + '\n' + message['content'] + '[/INST]' }}{% endif %}"
    "{% endfor %}")

GROUPRP = r"""
import json, resource, sys
from transformers import TrainerCallback
from grouprp.config import load_config
from grouprp.train import run
class Keep(TrainerCallback):
    def on_train_end(self, args, state, *a, **kw): self.history = state.log_history
keep = Keep()
run(load_config(None, json.loads(sys.argv[1])), callbacks=[keep])
runtime = [h["train_runtime"] for h in keep.history if "train_runtime" in h][-1]
print(json.dumps({"train_runtime": runtime, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

TRL = r"""
import json, resource, sys, time
from datasets import disable_caching, load_from_disk
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer
work, steps, sequence_len, template, strategy = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4],
                                                 sys.argv[6])
disable_caching()  # each run processes the dataset itself, not the one before it
tokenizer = AutoTokenizer.from_pretrained(sys.argv[5])
tokenizer.chat_template = template
model = AutoModelForCausalLM.from_pretrained(work + "/base")
config = SFTConfig(output_dir=work + "/trl", max_length=sequence_len, assistant_only_loss=True, packing=True,
                   packing_strategy=strategy,
                   dataset_num_proc=2, per_device_train_batch_size=1, gradient_accumulation_steps=4,
                   max_steps=steps, learning_rate=2e-3, gradient_checkpointing=True, report_to=[], save_strategy="no",
                   logging_steps=1, use_cpu=True, seed=42, dataloader_num_workers=0, bf16=False)
started = time.perf_counter()
trainer = SFTTrainer(model=model, args=config, train_dataset=load_from_disk(work + "/conversations"),
                     processing_class=tokenizer, peft_config=LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
prepare_seconds = time.perf_counter() - started
rows = trainer.train_dataset
lengths = [len(ids) for ids in rows["input_ids"]]
trained = [sum(1 for label in labels if label != -100) for labels in rows["labels"]]
after_prepare = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
result = trainer.train()
print(json.dumps({"prepare_seconds": prepare_seconds, "rows": len(lengths), "tokens": sum(lengths),
                  "trained_tokens": sum(trained), "train_runtime": result.metrics["train_runtime"],
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "prepare_peak_mb": after_prepare}))
"""


def conversations(cfg, path: Path) -> int:
    """The threads as TRL conversations, cleaned as grouprp cleans them; returns how many threads were kept."""
    from datasets import Dataset

    from grouprp.filters import Accounting, Kept, build_entry
    from grouprp.formats.group import system_prompt
    from grouprp.sheets import SheetSchema
    from grouprp.sources import read_threads

    rows = []
    schema = SheetSchema(cfg.data.sheet_schema)
    for thread in read_threads(cfg.data, Accounting().left_out):
        result = build_entry(thread, cfg.data, schema)
        if not isinstance(result, Kept):
            continue
        entry = result.entry
        messages = [{"role": "system", "content": system_prompt(entry)}]
        messages += [{"role": "assistant" if t.role == "model" else "user", "content": f"{t.character}: {t.text}"}
                     for t in entry.turns]
        rows.append({"messages": messages})
    Dataset.from_list(rows).save_to_disk(str(path))
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=300)
    parser.add_argument("--posts", type=int, nargs="+", default=[40], help="posts per thread, or MIN MAX")
    parser.add_argument("--sequence-len", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from grouprp.config import load_config
    from grouprp.packing import fill
    from grouprp.prepare import load_prepared, prepare

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from prepare_speed import generate

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        data = work / "threads.jsonl"
        posts = args.posts[0] if len(args.posts) == 1 else (args.posts[0], args.posts[1])
        generate(data, args.threads, posts, words=(args.sequence_len // 55, args.sequence_len // 20))
        tokenizer = AutoTokenizer.from_pretrained(str(TOKENIZER))
        base = AutoModelForCausalLM.from_config(AutoConfig.for_model(
            "mistral", vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
            max_position_embeddings=args.sequence_len, **SHAPE))
        base.save_pretrained(str(work / "base"))
        tokenizer.save_pretrained(str(work / "base"))
        overrides = [f"output_dir={work / 'grouprp'}", f"data.path={data}", f"data.sequence_len={args.sequence_len}",
                     "data.num_proc=2", f"model.base={work / 'base'}", f"model.tokenizer={TOKENIZER}",
                     "model.load_in_8bit=false", "train.deepspeed=null", "train.packing=true",
                     f"train.max_steps={args.steps}", "train.global_batch_size=4", "train.learning_rate=2e-3",
                     "train.report_to=[none]", "train.save_steps=100000", "train.bf16=false", "eval.split=0",
                     "lora.r=8", "lora.alpha=16", "lora.dropout=0.0"]
        cfg = load_config(None, overrides)
        import datasets.arrow_writer  # noqa: F401  TRL's side imports its libraries before its clock starts;
        import datasketch  # noqa: F401  so does this one (prepare imports these on first use)

        started = time.perf_counter()
        manifest = prepare(cfg, tokenizer).manifest
        grouprp_prepare = time.perf_counter() - started
        dataset, _ = load_prepared(cfg.output_dir)
        rows = fill(dataset["length"], args.sequence_len, True)
        trained_per_row = manifest["trained_tokens"] / rows.rows
        ours = json.loads(_run([sys.executable, "-c", GROUPRP, json.dumps(overrides)])[-1])
        conversations(cfg, work / "conversations")
        theirs = {strategy: json.loads(_run([sys.executable, "-c", TRL, str(work), str(args.steps),
                                             str(args.sequence_len), LYRA_TEMPLATE, str(TOKENIZER), strategy])[-1])
                  for strategy in STRATEGIES}

    results = {
        "grouprp": {"prepare_tokens_per_second": manifest["tokens"] / grouprp_prepare,
                    "trained_tokens_kept": manifest["trained_tokens"], "token_efficiency": rows.efficiency,
                    "trained_tokens_per_second": trained_per_row * 4 * args.steps / ours["train_runtime"],
                    "peak_mb": ours["peak_mb"]},
        **{f"trl {strategy}": {
            "prepare_tokens_per_second": trl["tokens"] / trl["prepare_seconds"],
            "trained_tokens_kept": trl["trained_tokens"],
            "token_efficiency": trl["tokens"] / (trl["rows"] * args.sequence_len),
            "trained_tokens_per_second": trl["trained_tokens"] / trl["rows"] * 4 * args.steps / trl["train_runtime"],
            "peak_mb": trl["peak_mb"]} for strategy, trl in theirs.items()},
    }
    print(f"{args.threads} generated threads x {'-'.join(map(str, args.posts))} posts, sequence_len "
          f"{args.sequence_len:,}, {args.steps} steps of 4 rows, tiny model, {os.cpu_count()} CPUs")
    labels = [("prepare_tokens_per_second", "data preparation, tokens/s", "{:,.0f}"),
              ("trained_tokens_kept", "trained tokens kept", "{:,}"),
              ("token_efficiency", "token efficiency", "{:.3f}"),
              ("trained_tokens_per_second", "trained tokens/s in training", "{:,.0f}"),
              ("peak_mb", "peak memory of training, MB", "{:,.0f}")]
    print(f"{'':32}" + "".join(f"{name:>16}" for name in results))
    for key, label, form in labels:
        print(f"{label:32}" + "".join(f"{form.format(figures[key]):>16}" for figures in results.values()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def _run(command: list[str]) -> list[str]:
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if done.returncode != 0:
        sys.exit(f"{command[:3]} failed:\n{done.stderr[-4000:]}")
    return done.stdout.strip().splitlines()


if __name__ == "__main__":
    main()
