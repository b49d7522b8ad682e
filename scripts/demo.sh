#!/usr/bin/env bash
# The main job on a fresh machine: set up, prepare the bundled sample threads, and train the tiny demo model
# through the real launcher (8-bit base, LoRA, DeepSpeed ZeRO-2, two ranks; on CPU when there is no GPU).
# Usage: bash scripts/demo.sh [key=value ...]     (overrides go to configs/demo.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

echo "== what the sample data becomes (grouprp stats configs/demo.yaml)"
grouprp stats configs/demo.yaml "$@"
echo "== training: deepspeed --num_gpus 2 launch/train.py --config configs/demo.yaml"
deepspeed --num_gpus 2 launch/train.py --config configs/demo.yaml "$@"
echo "== does it beat its base on the held-out threads? (grouprp eval runs/demo)"
grouprp eval runs/demo --generations 2 --max-new-tokens 40 --seed 0
echo "== done: the adapter, tokenizer, config, model card and eval.json are in runs/demo/; talk to it with"
echo "   grouprp chat runs/demo --thread data/sample/threads.jsonl:t01-ember-road-ambush"
