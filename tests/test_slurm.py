"""The Slurm job scripts, run by bash with fake `srun`, `scontrol`, `scancel`, `sbatch`, `hostname` and launchers on
PATH (there is no cluster here): the exact launcher command lines on 1 and 2 nodes, the requeue decision, and a
time-limit signal passed on to the training step."""

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT
from grouprp.cli import main
from grouprp.slurm import DEFAULT, Shape, render

FAKES = {
    # srun runs the task once per node of the allocation, SLURM_NODEID set as Slurm sets it
    "srun": '''while [ "${1#--}" != "$1" ]; do echo "srun-option $1" >> "$CALLS"; shift; done
for node in $(seq 0 $((SLURM_JOB_NUM_NODES - 1))); do SLURM_NODEID=$node "$@" & done
status=0; for job in $(jobs -p); do wait "$job" || status=$?; done; exit $status''',
    "scontrol": '''if [ "$1 $2" = "show hostnames" ]; then printf '%s\\n' $FAKE_NODES; else echo "scontrol $*" >> "$CALLS"; fi''',
    "scancel": '''echo "scancel $*" >> "$CALLS"; touch "$WORK/stop"''',
    "sbatch": '''echo "sbatch $*" >> "$CALLS"; echo "Submitted batch job 4321"''',
    "hostname": '''echo node01''',
}
LAUNCHER = '''record="$(basename "$0")$(printf ' %q' "$@")
ignored-usr1 $(( 0x$(awk '/^SigIgn/ {print $2}' /proc/$$/status) >> 9 & 1 ))"
for file in hostfile-*; do [ -f "$file" ] && record+=$'\n'"$(sed "s/^/hostfile: /" "$file")"; done
# one write per launch: the nodes of a fake srun run at once, and separate writes interleaved in the log
printf '%s\n' "$record" >> "$CALLS"
if [ -n "${FAKE_WAIT_FOR_STOP:-}" ]; then  # a training run: it stops (with a checkpoint) when asked to
  touch "$WORK/started"; while [ ! -f "$WORK/stop" ]; do sleep 0.05; done; exit 75
fi
exit "${FAKE_EXIT:-0}"'''


@pytest.fixture
def cluster(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {**FAKES, "deepspeed": LAUNCHER, "torchrun": LAUNCHER}.items():
        (bin_dir / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    work = tmp_path / "submit"
    work.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_SUBMIT_DIR": str(work),
           "SLURM_JOB_ID": "1234", "SLURM_JOB_NODELIST": "node[01-02]", "SLURM_JOB_NUM_NODES": "1",
           "SLURM_GPUS_ON_NODE": "4", "FAKE_NODES": "node01", "VIRTUAL_ENV": str(tmp_path),
           "CALLS": str(tmp_path / "calls"), "WORK": str(work)}
    return env, tmp_path


def run_script(script: str, env: dict, tmp_path: Path, *args, background=False, **extra):
    path = tmp_path / "job.sbatch"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    command = ["bash", str(path), *args]
    if background:
        return subprocess.Popen(command, env={**env, **extra}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(command, env={**env, **extra}, capture_output=True, text=True, timeout=60)


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


def launches(tmp_path: Path) -> list[str]:
    return [line for line in calls(tmp_path) if line.startswith(("deepspeed", "torchrun"))]


def generated(tmp_path, *argv) -> str:
    out = tmp_path / "generated.sbatch"
    assert main(["slurm", "configs/lyra_lora.yaml", *argv, "--out", str(out)]) == 0
    return out.read_text()


def test_the_one_node_script_is_the_template_and_launches_deepspeed_on_the_nodes_gpus(cluster):
    env, tmp_path = cluster
    script = (ROOT / "launch" / "slurm.sbatch").read_text()
    assert script == render(DEFAULT)  # `python -m grouprp.slurm > launch/slurm.sbatch` rewrites it
    result = run_script(script, env, tmp_path, "configs/lyra_lora.yaml", "train.epochs=1", "data.path=my threads.jsonl")
    assert result.returncode == 0, result.stderr
    assert launches(tmp_path) == [
        "deepspeed --num_gpus 4 --master_port 29734 launch/train.py --config configs/lyra_lora.yaml "
        "train.resume=auto train.epochs=1 data.path=my\\ threads.jsonl"]
    assert "ignored-usr1 1" in calls(tmp_path)  # the launcher ignores the time-limit signal; its ranks do not
    assert "srun-option --kill-on-bad-exit=1" in calls(tmp_path)
    assert not any(line.startswith("scontrol requeue") for line in calls(tmp_path))
    missing = run_script(script, env, tmp_path)
    assert missing.returncode != 0 and "usage: sbatch launch/slurm.sbatch CONFIG" in missing.stderr


def test_two_nodes_deepspeed_reads_a_hostfile_of_the_allocation_and_each_node_is_told_its_rank(cluster):
    env, tmp_path = cluster
    script = generated(tmp_path, "--nodes", "2", "--gpus-per-node", "4", "--partition", "gpu", "--account", "lab",
                       "--time", "2-00:00:00", "train.epochs=1", "data.path=it's $HOME.jsonl")
    assert "#SBATCH --nodes=2" in script and "#SBATCH --partition=gpu" in script
    assert "#SBATCH --account=lab" in script and "#SBATCH --time=2-00:00:00" in script
    assert "#SBATCH --signal=B:USR1@300" in script and "#SBATCH --requeue" in script
    result = run_script(script, env, tmp_path, SLURM_JOB_NUM_NODES="2", FAKE_NODES="node01 node02")
    assert result.returncode == 0, result.stderr
    common = ("--hostfile hostfile-1234 --no_ssh --num_nodes 2 --num_gpus 4 --master_addr node01 --master_port 29734 "
              "launch/train.py --config configs/lyra_lora.yaml train.resume=auto train.epochs=1 "
              "data.path=it\\'s\\ \\$HOME.jsonl")
    assert sorted(launches(tmp_path)) == [f"deepspeed --node_rank=0 {common}", f"deepspeed --node_rank=1 {common}"]
    assert (tmp_path / "submit" / "hostfile-1234").read_text() == "node01 slots=4\nnode02 slots=4\n"


def test_two_nodes_torchrun_meets_at_a_c10d_rendezvous_on_the_first_node(cluster):
    env, tmp_path = cluster
    script = generated(tmp_path, "--nodes", "2", "--gpus-per-node", "8", "--launcher", "torchrun")
    result = run_script(script, env, tmp_path, SLURM_JOB_NUM_NODES="2", FAKE_NODES="node01 node02",
                        SLURM_GPUS_ON_NODE="8")
    assert result.returncode == 0, result.stderr
    line = ("torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint node01:29734 --rdzv_id 1234 "
            "-m grouprp train configs/lyra_lora.yaml train.resume=auto")
    assert launches(tmp_path) == [line, line]
    assert "#SBATCH --cpus-per-task=64" in script


@pytest.mark.parametrize("code, requeued, status", [(75, True, 0), (1, False, 1), (0, False, 0)])
def test_the_stop_code_requeues_the_job_and_other_codes_do_not(cluster, code, requeued, status):
    env, tmp_path = cluster
    result = run_script(generated(tmp_path), env, tmp_path, FAKE_EXIT=str(code))
    assert result.returncode == status, result.stderr
    assert ("scontrol requeue 1234" in calls(tmp_path)) is requeued


def test_the_time_limit_signal_reaches_the_step_and_the_job_requeues(cluster):
    env, tmp_path = cluster
    job = run_script(generated(tmp_path, "--nodes", "2"), env, tmp_path, background=True, FAKE_WAIT_FOR_STOP="1",
                     SLURM_JOB_NUM_NODES="2", FAKE_NODES="node01 node02")
    started = time.monotonic()
    while not (tmp_path / "submit" / "started").exists():
        assert time.monotonic() - started < 30 and job.poll() is None, job.communicate()
        time.sleep(0.05)
    job.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@300 does
    out, err = job.communicate(timeout=30)
    assert job.returncode == 0, err
    assert "scancel --signal=USR1 1234" in calls(tmp_path)  # to every process of the step, on every node
    assert "scontrol requeue 1234" in calls(tmp_path)
    assert "SIGUSR1 received" in out


def test_scancel_stops_the_job_without_requeueing_it(cluster):
    env, tmp_path = cluster
    job = run_script(generated(tmp_path), env, tmp_path, background=True, FAKE_WAIT_FOR_STOP="1")
    started = time.monotonic()
    while not (tmp_path / "submit" / "started").exists():
        assert time.monotonic() - started < 30 and job.poll() is None, job.communicate()
        time.sleep(0.05)
    job.send_signal(signal.SIGTERM)
    job.communicate(timeout=30)
    assert "scancel --signal=TERM 1234" in calls(tmp_path)
    assert "scontrol requeue 1234" not in calls(tmp_path) and job.returncode == 75


def test_submit_passes_the_script_to_sbatch_and_bad_shapes_are_config_errors(cluster, capsys, monkeypatch):
    env, tmp_path = cluster
    monkeypatch.setenv("PATH", env["PATH"])
    monkeypatch.setenv("CALLS", env["CALLS"])
    out = tmp_path / "job.sbatch"
    assert main(["slurm", "configs/lyra_lora.yaml", "--submit", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == "Submitted batch job 4321"
    assert calls(tmp_path) == [f"sbatch {out}"] and os.access(out, os.X_OK)
    assert main(["slurm", "configs/lyra_lora.yaml", "--time", "tomorrow"]) == 2
    assert "--time 'tomorrow'" in capsys.readouterr().err
    assert main(["slurm", "configs/lyra_lora.yaml", "train.epochz=1"]) == 2  # the config is checked here
    assert "train.epochz: unknown key" in capsys.readouterr().err


def test_every_generated_shape_is_valid_bash():
    for nodes in (1, 2, 16):
        for launcher in ("deepspeed", "torchrun"):
            script = render(Shape(nodes=nodes, launcher=launcher), "c.yaml", ("a=b c", "x='y'"))
            assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
            assert shlex.quote("a=b c") in script
