#!/usr/bin/env bash
# Create .venv and install grouprp into it: torch first (the CPU build when there is no GPU), then the project.
# Usage: bash scripts/setup.sh            (idempotent; safe to rerun)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    python -m pip install --quiet torch
  else
    # CPU-only machine: pin the CPU build; a bare `pip install torch` would pull several GB of CUDA wheels
    python -m pip install --quiet torch==2.13.0
  fi
fi
python -m pip install --quiet -e ".[test]"
