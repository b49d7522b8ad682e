#!/usr/bin/env bash
# Gathers, into .whl/ (in .gitignore), what benchmarks/gpu_step.py needs on a GPU machine that has torch,
# transformers, peft and accelerate but neither deepspeed, bitsandbytes nor datasets, and cannot download:
# wheels for CPython 3.12 on x86-64 Linux at this environment's versions, and Mistral-Nemo's tokenizer
# (mistral-common's tekken file converted and compressed, 17 MB -> 3 MB). Run it from the project's venv.
#
#     bash benchmarks/gpu_carry.sh
#
# Then, on the GPU machine, from the repo root with .whl/ beside it:
#
#     python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#     export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1
#     mkdir -p /tmp/nemo && tar -xzf .whl/nemo-tokenizer.tar.gz -C /tmp/nemo
#     python3 benchmarks/gpu_step.py --layers 1 2 4 --sequence-len 8192 --steps 4 --tokenizer /tmp/nemo
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl
mkdir .whl

version() { python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }

# deepspeed is pure Python: built here, with no compiled ops (they are built on first use, if ever)
python -m pip wheel -q --no-deps --no-build-isolation -w .whl "deepspeed==$(version deepspeed)"
# the rest as published wheels; the GPU image already has numpy, scipy, pyarrow, pandas, xxhash, fsspec, msgpack,
# py-cpuinfo, psutil, einops, ninja, tqdm, pyyaml and huggingface-hub
packages=()
for name in bitsandbytes datasets dill multiprocess hjson pydantic pydantic-core annotated-types \
            typing-inspection datasketch; do
  packages+=("$name==$(version "$name")")
done
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl "${packages[@]}"

python - <<'EOF'
import tarfile
import tempfile
from pathlib import Path

import mistral_common
from transformers.integrations.mistral.tokenizer import convert_tekken_tokenizer

with tempfile.TemporaryDirectory() as folder:
    tekken = Path(mistral_common.__file__).parent / "data" / "tekken_240718.json"
    convert_tekken_tokenizer(str(tekken)).save_pretrained(folder)
    with tarfile.open(".whl/nemo-tokenizer.tar.gz", "w:gz") as archive:
        for path in sorted(Path(folder).iterdir()):
            archive.add(path, arcname=path.name)
EOF
ls -l .whl
du -sh .whl
