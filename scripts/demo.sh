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
echo "== done: the adapter, tokenizer, config and model card are in runs/demo/ (see runs/demo/README.md)"
