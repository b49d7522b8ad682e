"""Peak memory of one training step with the full-logits loss against the chunked one (CPU).

    python benchmarks/loss_memory.py [--tokens 8192] [--vocab 131072] [--trained 0.4]

A 2-layer Mistral-architecture model (hidden 256) with LoRA on every linear layer and Mistral-Nemo's vocabulary
size runs one forward and backward pass on one example of `--tokens` tokens, of which `--trained` carry a label,
in a fresh process per loss path. Each process reports its peak resident memory (ru_maxrss) before the step (the
model and the batch) and after it: the difference is what the step needed. On a GPU the logits are bf16 and the
allocator differs, but the tensor that the chunked loss never builds is the same: tokens x vocabulary.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

STEP = r"""
import json, resource, sys, torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, MistralConfig
from grouprp.loss import causal_lm_loss
tokens, vocab, trained, mode = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
torch.manual_seed(0)
config = MistralConfig(vocab_size=vocab, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                       num_attention_heads=8, num_key_value_heads=2, tie_word_embeddings=False,
                       max_position_embeddings=tokens, attn_implementation="sdpa", use_cache=False)
model = get_peft_model(AutoModelForCausalLM.from_config(config), LoraConfig(r=16, target_modules="all-linear"))
ids = torch.randint(0, vocab, (1, tokens))
labels = ids.clone()
labels[0, : int(tokens * (1 - trained))] = -100
inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
loss = model(**inputs).loss if mode == "full" else causal_lm_loss(model, inputs)
loss.backward()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"mode": mode, "before_mb": before / 1024, "after_mb": after / 1024, "loss": float(loss)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--vocab", type=int, default=131072)
    parser.add_argument("--trained", type=float, default=0.4, help="share of the tokens that carry a label")
    args = parser.parse_args()
    results = []
    for mode in ("full", "chunked"):
        out = subprocess.run([sys.executable, "-c", STEP, str(args.tokens), str(args.vocab), str(args.trained), mode],
                             capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"one step, {args.tokens:,} tokens ({args.trained:.0%} trained), vocabulary {args.vocab:,}, 2 layers:")
    for r in results:
        print(f"  {r['mode']:8} peak {r['after_mb']:8,.0f} MB, of which the step {r['after_mb'] - r['before_mb']:8,.0f} "
              f"MB; loss {r['loss']:.4f}")
    logits = args.tokens * args.vocab * 4 / 2**20
    print(f"  (the full logits alone, in fp32: {logits:,.0f} MB)")


if __name__ == "__main__":
    main()
