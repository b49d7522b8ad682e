"""The benchmark scripts keep working (their figures are measured by running them, not here)."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def test_the_gpu_step_benchmark_runs_the_real_training_path_on_a_tiny_shape(tmp_path):
    out = tmp_path / "steps.json"
    done = subprocess.run([sys.executable, "benchmarks/gpu_step.py", "--tiny", "--layers", "1", "2", "--steps", "2",
                           "--sequence-len", "512", "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert [r["layers"] for r in results] == [1, 2]
    assert all(r["peak_gb"] > 0 and r["trained_tokens_per_second"] > 0 and r["loss"] == "chunked" for r in results)
    assert "each extra layer adds" in done.stdout and "trained tokens/s, loss chunked" in done.stdout
