"""The Slurm job script, with `srun` and `deepspeed` replaced by stubs (there is no cluster here)."""

import os
import subprocess
from pathlib import Path

from conftest import ROOT


def test_sbatch_script_launches_deepspeed_on_the_nodes_gpus_with_auto_resume(tmp_path):
    stubs = tmp_path / "bin"
    stubs.mkdir()
    record = tmp_path / "calls"
    for name in ("srun", "deepspeed", "scontrol"):
        stub = stubs / name
        stub.write_text(f'#!/usr/bin/env bash\necho "{name} $*" >> {record}\n'
                        + ('shift; exec "$@"\n' if name == "srun" else ""))
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "SLURM_SUBMIT_DIR": str(ROOT),
           "SLURM_GPUS_ON_NODE": "4", "SLURM_JOB_ID": "1234", "VIRTUAL_ENV": str(tmp_path)}
    result = subprocess.run(["bash", str(ROOT / "launch" / "slurm.sbatch"), "configs/lyra_lora.yaml",
                             "train.epochs=1"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    calls = Path(record).read_text().splitlines()
    assert calls[-1] == ("deepspeed --num_gpus 4 --master_port 29734 launch/train.py --config configs/lyra_lora.yaml "
                         "train.resume=auto train.epochs=1")
    assert calls[0].startswith("srun --kill-on-bad-exit=1 deepspeed")
    missing = subprocess.run(["bash", str(ROOT / "launch" / "slurm.sbatch")], env=env, capture_output=True, text=True)
    assert missing.returncode != 0 and "usage: sbatch launch/slurm.sbatch CONFIG" in missing.stderr
