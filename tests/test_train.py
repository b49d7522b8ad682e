"""Training on CPU with the real stack: two DeepSpeed ranks, ZeRO-2, an 8-bit base from bitsandbytes, PEFT LoRA.

These launch real processes and take a few minutes on 2 cores; they share runs through module fixtures.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT
from grouprp.checkpoints import checkpoint_problem
from grouprp.config import ConfigError, load_config
from grouprp.train import gradient_accumulation

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
STEPS = 6
STOP_AT = 3
COMMON = [f"train.max_steps={STEPS}", "train.save_steps=1", "train.save_total_limit=10", "train.logging_steps=1",
          "train.report_to=[tensorboard]"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false"}


def deepspeed(script, *args, timeout=900):
    command = [str(BIN / "deepspeed"), "--num_gpus", "2", "--master_port", str(free_port()), str(script), *args]
    return subprocess.run(command, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout)


def deepspeed_grouprp_train(*args, timeout=900):
    """`deepspeed --module grouprp train CONFIG ...`: the package's own command under the deepspeed launcher."""
    command = [str(BIN / "deepspeed"), "--num_gpus", "2", "--master_port", str(free_port()), "--module", "grouprp",
               "train", *args]
    return subprocess.run(command, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout)


def buffers_left(port: int) -> list[Path]:
    """DeepSpeed's CPU all-reduce files in /dev/shm of the run whose rendezvous was on `port`."""
    return sorted(Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_{os.getuid()}_*_{port}_*"))


def check(result):
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def losses(checkpoint: Path) -> dict[int, float]:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return {h["step"]: h["loss"] for h in state["log_history"] if "loss" in h}


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    """One random tiny base for every run here, so the runs are comparable."""
    return tmp_path_factory.mktemp("base") / "model"


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, base_model):
    out = tmp_path_factory.mktemp("full")
    result = check(deepspeed(ROOT / "launch" / "train.py", "--config", "configs/demo.yaml", f"output_dir={out}",
                             f"model.base={base_model}", *COMMON))
    (out / "console.txt").write_text(result.stdout + result.stderr)
    (out / "port.txt").write_text(result.args[result.args.index("--master_port") + 1])
    return out


WATCH = textwrap.dedent('''
    """Runs grouprp.train.run with a callback that records which weights changed, per rank."""
    import json, os, sys
    import bitsandbytes as bnb
    import torch
    from transformers import TrainerCallback
    from grouprp.config import load_config
    from grouprp.train import run

    class Watch(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            self.before = {n: p.detach().clone() for n, p in model.named_parameters()}
            self.scales = {n: m.weight.SCB.clone() for n, m in model.named_modules()
                           if isinstance(m, bnb.nn.Linear8bitLt) and m.weight.SCB is not None}

        def on_train_end(self, args, state, control, model=None, **kw):
            after = dict(model.named_parameters())
            lora = [n for n in self.before if "lora_" in n]
            base = [n for n in self.before if "lora_" not in n]
            # bitsandbytes moves the scales from weight.SCB to state.SCB on the first forward
            scb = lambda m: m.weight.SCB if m.weight.SCB is not None else m.state.SCB
            report = {
                "lora": len(lora), "base": len(base),
                "int8": sum(1 for n in base if self.before[n].dtype == torch.int8),
                "lora_changed": sum(1 for n in lora if not torch.equal(self.before[n], after[n].detach())),
                "base_changed": sum(1 for n in base if not torch.equal(self.before[n], after[n].detach())),
                "scales": len(self.scales),
                "scales_changed": sum(1 for n, m in model.named_modules()
                                      if n in self.scales and not torch.equal(self.scales[n], scb(m))),
                "trainable_base": sum(1 for n in base if after[n].requires_grad),
                "lm_head_lora": any("lm_head" in n for n in lora),
            }
            path = os.path.join(sys.argv[1], f"watch-rank{os.environ.get('RANK', 0)}.json")
            with open(path, "w") as handle:
                json.dump(report, handle)

    argv = [a for a in sys.argv if not a.startswith("--local_rank")]  # the deepspeed launcher adds it
    sys.argv = argv

    import grouprp.prepare
    real_prepare = grouprp.prepare.prepare

    def counted_prepare(*args, **kwargs):  # records which ranks build the dataset
        with open(os.path.join(argv[1], f"prepare-rank{os.environ.get('RANK', 0)}"), "a") as handle:
            handle.write("called\\n")
        return real_prepare(*args, **kwargs)

    grouprp.prepare.prepare = counted_prepare
    run(load_config(argv[2], argv[3:]), callbacks=[Watch()])
''')


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, base_model, full_run):
    out = tmp_path_factory.mktemp("stopped")
    script = out / "watch.py"
    script.write_text(WATCH)
    check(deepspeed(script, str(out), "configs/demo.yaml", f"output_dir={out}", f"model.base={base_model}",
                    f"train.stop_after_steps={STOP_AT}", *COMMON))
    return out


def test_two_rank_deepspeed_8bit_run_learns_and_saves_a_loadable_adapter(full_run, base_model):
    info = json.loads((full_run / "grouprp.json").read_text())
    assert info["template"] == "lyra" and info["metrics"]["steps"] == STEPS
    assert info["metrics"]["eval_loss"] < info["metrics"]["eval_loss_before"]
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "config.yaml", "README.md"):
        assert (full_run / name).is_file(), name
    card = (full_run / "README.md").read_text()
    assert "## Training metrics" in card and "| GPUs | 2" in card and "ZeRO stage 2" in card
    assert "micro batch 1 x accumulation 2 x 2" in card and "8-bit (bitsandbytes LLM.int8)" in card
    assert load_config(full_run / "config.yaml").train.global_batch_size == 4
    assert list((full_run / "checkpoints" / "runs").iterdir()), "no TensorBoard logs"
    assert buffers_left(int((full_run / "port.txt").read_text())) == []  # DeepSpeed's CPU all-reduce files

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    base = AutoModelForCausalLM.from_pretrained(str(base_model), device_map={"": "cpu"},
                                                quantization_config=BitsAndBytesConfig(load_in_8bit=True))
    model = PeftModel.from_pretrained(base, str(full_run))
    names = [n for n, _ in model.named_parameters() if "lora_B" in n]
    assert names and any(p.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)
    with torch.no_grad():
        logits = model(torch.tensor([[1, 5, 9, 12]])).logits
    assert logits.shape[:2] == (1, 4) and torch.isfinite(logits).all()


def test_the_eval_loss_is_the_same_on_two_ranks_as_on_one(full_run, base_model, tmp_path):
    """The demo holds out an odd number of examples, which two ranks cannot split evenly."""
    command = [str(BIN / "grouprp"), "train", "configs/demo.yaml", f"output_dir={tmp_path}", f"model.base={base_model}",
               "train.deepspeed=null", "train.max_steps=1", "train.report_to=[none]"]
    check(subprocess.run(command, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600))
    held_out = int(re.search(r"(\d+) held out for eval", (full_run / "console.txt").read_text()).group(1))
    assert held_out % 2 == 1  # the premise: two ranks cannot split them evenly
    one = json.loads((tmp_path / "grouprp.json").read_text())["metrics"]["eval_loss_before"]
    two = json.loads((full_run / "grouprp.json").read_text())["metrics"]["eval_loss_before"]
    assert abs(one - two) < 1e-4, (one, two, held_out)


def test_one_progress_report_shows_loss_trained_tokens_per_second_and_eta(full_run):
    console = (full_run / "console.txt").read_text()
    assert console.count("step 0: eval_loss") == 1  # every rank evaluates; only rank 0 reports it
    # not a terminal here, so plain lines rather than a bar: one per logged step, then a closing one
    lines = re.findall(r"grouprp: training: (\d+)/(\d+) steps \([\d.]+ steps/s, (?:about (\d+ \w+) left|\d+ \w+)\)"
                       r", loss (\d+\.\d{4}), tok/s ([\d,]+)", console)
    assert lines, console[-2000:]
    assert {int(total) for _, total, *_ in lines} == {STEPS}
    assert max(int(done) for done, *_ in lines) == STEPS  # it reached the end
    assert any(eta for _, _, eta, *_ in lines)  # and said how long was left on the way
    assert all(float(loss) > 0 and int(rate.replace(",", "")) > 0 for *_, loss, rate in lines)
    assert len([line for line in console.splitlines() if "grouprp: training:" in line]) <= STEPS + 1  # rank 0 only


def test_only_lora_weights_change_and_ranks_agree(stopped_run):
    reports = [json.loads((stopped_run / f"watch-rank{r}.json").read_text()) for r in (0, 1)]
    assert reports[0] == reports[1]
    report = reports[0]
    assert report["int8"] > 0 and report["lora"] > 0 and report["scales"] == report["int8"]
    assert report["lora_changed"] == report["lora"]  # every A and B matrix moves
    assert report["base_changed"] == 0 and report["scales_changed"] == 0 and report["trainable_base"] == 0
    assert not report["lm_head_lora"]


def test_only_rank_zero_prepares_the_dataset(stopped_run):
    assert (stopped_run / "prepare-rank0").read_text() == "called\n"
    assert not (stopped_run / "prepare-rank1").exists()


def test_torchrun_and_a_single_process_take_the_same_path(full_run, base_model, tmp_path):
    torchrun = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(free_port()),
                "-m", "grouprp", "train", "configs/demo.yaml", f"output_dir={tmp_path / 'tr'}",
                f"model.base={base_model}", *COMMON, "train.stop_after_steps=2", "train.save_total_limit=1"]
    check(subprocess.run(torchrun, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600))
    kept = sorted(p.name for p in (tmp_path / "tr" / "checkpoints").glob("checkpoint-*"))
    assert kept == ["checkpoint-2"]  # saved every step, only the last one kept
    first_steps = losses(tmp_path / "tr" / "checkpoints" / "checkpoint-2")
    uninterrupted = losses(full_run / "checkpoints" / f"checkpoint-{STEPS}")
    assert [first_steps[s] for s in (1, 2)] == [uninterrupted[s] for s in (1, 2)]  # same launch, same numbers

    single = [str(BIN / "grouprp"), "train", "configs/demo.yaml", f"output_dir={tmp_path / 'one'}",
              f"model.base={base_model}", "train.max_steps=1", "eval.split=0", "train.report_to=[none]",
              "train.loss=full"]
    result = check(subprocess.run(single, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600))
    card = (tmp_path / "one" / "README.md").read_text()
    assert "| GPUs | 1" in card and "accumulation 4 x 1" in card
    assert "| Loss | full |" in card and "grouprp: loss: the model's own" in result.stderr
    assert (tmp_path / "one" / "adapter_model.safetensors").is_file()


def test_a_stopped_run_resumes_with_the_uninterrupted_losses(stopped_run, full_run, base_model):
    assert (stopped_run / "checkpoints" / f"checkpoint-{STOP_AT}").is_dir()
    check(deepspeed_grouprp_train("configs/demo.yaml", f"output_dir={stopped_run}", f"model.base={base_model}",
                                  *COMMON))
    resumed = losses(stopped_run / "checkpoints" / f"checkpoint-{STEPS}")
    uninterrupted = losses(full_run / "checkpoints" / f"checkpoint-{STEPS}")
    assert set(range(STOP_AT + 1, STEPS + 1)) <= set(resumed)
    for step in range(STOP_AT + 1, STEPS + 1):
        assert abs(resumed[step] - uninterrupted[step]) < 1e-4, (step, resumed[step], uninterrupted[step])


def test_resume_from_a_checkpoint_path_or_never(stopped_run, full_run, base_model, tmp_path):
    uninterrupted = losses(full_run / "checkpoints" / f"checkpoint-{STEPS}")
    copied = tmp_path / "copied"
    shutil.copytree(stopped_run / "checkpoints" / "checkpoint-2", copied / "checkpoint-2")
    result = check(deepspeed(ROOT / "launch" / "train.py", "--config", "configs/demo.yaml",
                             f"output_dir={tmp_path / 'from_path'}", f"model.base={base_model}", *COMMON,
                             f"train.resume={copied / 'checkpoint-2'}", "train.stop_after_steps=4"))
    assert f"resuming from {copied / 'checkpoint-2'}" in result.stderr
    resumed = losses(tmp_path / "from_path" / "checkpoints" / "checkpoint-4")
    assert all(abs(resumed[step] - uninterrupted[step]) < 1e-4 for step in (3, 4)), (resumed, uninterrupted)

    fresh = tmp_path / "never"  # checkpoints are there, and train.resume=never ignores them
    shutil.copytree(stopped_run / "checkpoints", fresh / "checkpoints")
    result = check(deepspeed(ROOT / "launch" / "train.py", "--config", "configs/demo.yaml", f"output_dir={fresh}",
                             f"model.base={base_model}", *COMMON, "train.resume=never", "train.stop_after_steps=1"))
    assert "resuming" not in result.stderr
    state = json.loads((fresh / "checkpoints" / "checkpoint-1" / "trainer_state.json").read_text())
    assert state["global_step"] == 1 and abs(losses(fresh / "checkpoints" / "checkpoint-1")[1] - uninterrupted[1]) < 1e-4


def test_a_checkpoint_left_incomplete_by_a_kill_is_skipped_and_the_run_ends_as_if_uninterrupted(
        stopped_run, full_run, base_model, tmp_path):
    for step in (1, 2, STOP_AT):
        shutil.copytree(stopped_run / "checkpoints" / f"checkpoint-{step}", tmp_path / "checkpoints" / f"checkpoint-{step}")
    killed = tmp_path / "checkpoints" / f"checkpoint-{STOP_AT}"
    (killed / "grouprp-complete.json").unlink()  # the marker is written last: a kill mid-save leaves none
    optimizer = max((p for p in killed.rglob("*optim_states.pt")), key=lambda p: p.stat().st_size)
    optimizer.write_bytes(optimizer.read_bytes()[:100])
    result = check(deepspeed(ROOT / "launch" / "train.py", "--config", "configs/demo.yaml", f"output_dir={tmp_path}",
                             f"model.base={base_model}", *COMMON))
    assert f"checkpoint-{STOP_AT} has no completion marker" in result.stderr
    assert f"resuming from {tmp_path / 'checkpoints' / 'checkpoint-2'}" in result.stderr
    assert len(list((tmp_path / "checkpoints").glob(f"checkpoint-{STOP_AT}.incomplete-*"))) == 1
    resumed = losses(tmp_path / "checkpoints" / f"checkpoint-{STEPS}")
    uninterrupted = losses(full_run / "checkpoints" / f"checkpoint-{STEPS}")
    for step in range(3, STEPS + 1):
        assert abs(resumed[step] - uninterrupted[step]) < 1e-4, (step, resumed[step], uninterrupted[step])


def test_a_config_error_under_torchrun_is_one_line_from_rank_zero_before_anything_loads(tmp_path):
    command = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(free_port()), "-m", "grouprp",
               "train", "configs/demo.yaml", f"output_dir={tmp_path / 'out'}", "train.lr_scheduler=cosinus"]
    result = subprocess.run(command, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
    assert result.returncode != 0 and errors == [errors[0]] and "train.lr_scheduler: unknown scheduler" in errors[0]
    # torchrun prints its own traceback for a failed child; none comes from grouprp's code
    assert str(ROOT / "grouprp") not in result.stderr and not (tmp_path / "out").exists()


def test_without_save_steps_a_checkpoint_is_saved_at_every_epoch_end(base_model, tmp_path):
    command = [str(BIN / "grouprp"), "train", "configs/demo.yaml", f"output_dir={tmp_path}", f"model.base={base_model}",
               "train.deepspeed=null", "train.report_to=[none]", "train.save_steps=0", "train.epochs=2",
               "train.save_total_limit=5", "eval.split=0"]
    check(subprocess.run(command, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600))
    saved = sorted((tmp_path / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    epochs = [json.loads((p / "trainer_state.json").read_text())["epoch"] for p in saved]
    per_epoch = -(-json.loads((tmp_path / "manifest.json").read_text())["examples"] // 4)  # global batch 4
    assert [p.name for p in saved] == [f"checkpoint-{per_epoch}", f"checkpoint-{2 * per_epoch}"]
    assert epochs == [1.0, 2.0]


def test_the_demo_log_tells_config_data_model_steps_result_without_library_noise(full_run):
    console = (full_run / "console.txt").read_text()
    story = ["grouprp: config: ", "grouprp: data: ", "grouprp: model: ", "grouprp: training: ", "grouprp: result: "]
    positions = [console.find(line) for line in story]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), positions
    for noise in ("is deprecated", "kernels-community", "Gradient accumulation steps mismatch",
                  "all_gather_into_tensor", "Traceback"):
        assert noise not in console, noise


def test_batch_arithmetic_error_names_keys_and_world_size_once(tmp_path):
    result = deepspeed(ROOT / "launch" / "train.py", "--config", "configs/demo.yaml", f"output_dir={tmp_path}",
                       "train.global_batch_size=5", timeout=300)
    assert result.returncode != 0
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "error: train.global_batch_size" in line]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "train.micro_batch_size (1) x world size (2 processes from the launcher) = 2" in errors[0]
    assert not (tmp_path / "dataset").exists()  # nothing was prepared or loaded


def test_gradient_accumulation_arithmetic():
    cfg = load_config(ROOT / "configs" / "lyra_lora.yaml")
    assert gradient_accumulation(cfg, 2) == 6 and gradient_accumulation(cfg, 1) == 12
    with pytest.raises(ConfigError, match=r"train.global_batch_size: 12 .* world size \(5 processes"):
        gradient_accumulation(cfg, 5)


def test_eval_split_keeps_each_threads_windows_together():
    from grouprp.train import held_out_rows

    ids = ["a#w0", "a#w1", "a#w2", "b", "c#w0", "c#w1", "d", "e", "f", "g"]
    train, held = held_out_rows(ids, 0.2, seed=3)
    assert sorted(train + held) == list(range(10)) and len(held) >= 2
    threads = lambda rows: {ids[r].split("#")[0] for r in rows}
    assert not threads(train) & threads(held)
    assert held_out_rows(ids, 0.2, seed=3) == (train, held)  # seeded
    assert held_out_rows(["a#w0", "a#w1"], 0.5, seed=0) == ([0, 1], [])  # one thread: nothing can be held out


def test_packed_rows_train_on_two_ranks_with_the_chunked_loss(tmp_path):
    result = check(deepspeed(ROOT / "launch" / "train.py", "--config", "configs/single_character.yaml",
                             f"output_dir={tmp_path}", f"model.base={tmp_path / 'base'}", "train.packing=true",
                             "train.max_steps=3", "train.report_to=[none]"))
    log = result.stderr
    rows = re.search(r"for training in (\d+) rows \(packed\).*token efficiency (0\.\d+)", log)
    assert rows and int(rows.group(1)) < 27 and float(rows.group(2)) > 0.6, log[-3000:]
    assert "loss: LM head and cross-entropy at trained positions only" in log
    card = (tmp_path / "README.md").read_text()
    assert "packed rows" in card and "| Loss | chunked |" in card and "One optimizer step | about " in card
    losses = [float(x) for x in re.findall(r"training: \d+/3 steps .*?loss (\d+\.\d+)", log)]
    assert len(losses) == 3 and all(x == x and x > 0 for x in losses)  # finite, and both ranks kept step


def test_single_character_config_trains_like_threads(tmp_path):
    command = [str(BIN / "grouprp"), "train", "configs/single_character.yaml", f"output_dir={tmp_path}",
               f"model.base={tmp_path / 'base'}", "train.max_steps=2", "train.deepspeed=null",
               "train.report_to=[none]"]
    check(subprocess.run(command, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600))
    info = json.loads((tmp_path / "grouprp.json").read_text())
    assert info["template"] == "alichat" and info["train_on_names"] is False and info["metrics"]["steps"] == 2
    card = (tmp_path / "README.md").read_text()
    assert "single-character roleplay: every reply of Rei" in card and "group roleplay" not in card
    assert info["metrics"]["eval_loss"] is not None
    assert (tmp_path / "adapter_model.safetensors").is_file()


def test_no_examples_left_is_a_clear_error_before_the_model_loads(tmp_path):
    command = [sys.executable, str(ROOT / "launch" / "train.py"), "--config", "configs/demo.yaml",
               f"output_dir={tmp_path}", f"model.base={tmp_path / 'base-model'}", "data.min_turns=500",
               "train.deepspeed=null"]
    result = subprocess.run(command, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "manifest.json: no examples to train on (24 entries read" in result.stderr
    assert not (tmp_path / "base-model").exists() and "Traceback" not in result.stderr


@pytest.mark.skipif(__import__("importlib").util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_wandb_without_the_package_is_a_config_error_before_anything_loads(tmp_path):
    from grouprp.train import run

    cfg = load_config(ROOT / "configs" / "demo.yaml", [f"output_dir={tmp_path}", "train.report_to=[tensorboard, wandb]"])
    with pytest.raises(ConfigError, match=r"train.report_to: wandb is not installed"):
        run(cfg)
    assert not any(tmp_path.iterdir())


def launch_in_session(command, log: Path, ignore_usr1: bool):
    """Start a launcher as a Slurm job step would run it: in a session of its own, so that every process under it
    can be signalled at once; with SIGUSR1 ignored by the launchers (the job script does that), not by the
    ranks, which install their own handler."""
    handle = open(log, "w")

    def ignore():
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)

    return subprocess.Popen(command, cwd=ROOT, env=env(), stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=ignore if ignore_usr1 else None)


def wait_for(log: Path, text: str, process, timeout=600):
    started = time.monotonic()
    while text not in log.read_text():
        assert process.poll() is None, f"ended before {text!r}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() - started < timeout, f"no {text!r} in {timeout} s"
        time.sleep(0.05)


def run_processes(marker: str) -> list[str]:
    """Live processes whose command line names `marker` (a run's unique output_dir): the launchers and the ranks,
    wherever a launcher put them (torchrun starts its workers in sessions of their own)."""
    listed = subprocess.run(["ps", "-ww", "-eo", "pid=,stat=,args="], capture_output=True, text=True)
    return [line for line in listed.stdout.splitlines()
            if marker in line and line.split()[1][:1] != "Z" and "ps -eo" not in line]


def until_gone(marker: str, timeout=180) -> list[str]:
    started = time.monotonic()
    while run_processes(marker) and time.monotonic() - started < timeout:
        time.sleep(0.5)
    return run_processes(marker)


def port_is_free(port: int) -> bool:
    """No process listens on the port (as a relaunch's rendezvous store binds it: SO_REUSEADDR, so connections
    of the run before still closing do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_sigusr1_mid_epoch_stops_every_rank_after_one_step_with_a_checkpoint_and_resume_matches(
        full_run, base_model, tmp_path):
    port = free_port()
    command = [str(BIN / "deepspeed"), "--num_gpus", "2", "--master_port", str(port), "launch/train.py", "--config",
               "configs/demo.yaml", f"output_dir={tmp_path}", f"model.base={base_model}", *COMMON,
               "train.save_steps=100"]  # no periodic checkpoint before the end: the one found is the stop's
    log = tmp_path / "console.txt"
    process = launch_in_session(command, log, ignore_usr1=True)
    wait_for(log, "training: 2/", process)
    os.killpg(process.pid, signal.SIGUSR1)  # what `scancel --signal=USR1` does to a job step
    wait_for(log, "stopping after step", process)
    with contextlib.suppress(ProcessLookupError):  # again, while the checkpoint is being written: ignored
        os.killpg(process.pid, signal.SIGUSR1)
    assert process.wait(timeout=600) == 75, log.read_text()[-3000:]
    assert until_gone(f"output_dir={tmp_path}") == [] and port_is_free(port)
    assert buffers_left(port) == []
    saved = list((tmp_path / "checkpoints").glob("checkpoint-*"))
    assert len(saved) == 1, saved
    stop = int(saved[0].name.split("-")[1])
    assert 2 <= stop < STEPS and checkpoint_problem(saved[0]) is None
    text = log.read_text()
    assert f"stopping after step {stop} (SIGUSR1)" in text and "exit 75" in text
    assert f"step {stop}: eval_loss" not in text  # no evaluation at a stop

    check(deepspeed_grouprp_train("configs/demo.yaml", f"output_dir={tmp_path}", f"model.base={base_model}",
                                  *COMMON, "train.save_steps=100"))
    resumed = losses(tmp_path / "checkpoints" / f"checkpoint-{STEPS}")
    uninterrupted = losses(full_run / "checkpoints" / f"checkpoint-{STEPS}")
    assert set(range(1, STEPS + 1)) <= set(resumed)
    for step in range(1, STEPS + 1):
        assert abs(resumed[step] - uninterrupted[step]) < 1e-4, (step, resumed[step], uninterrupted[step])


@pytest.mark.parametrize("launcher, sent", [("deepspeed", signal.SIGTERM), ("torchrun", signal.SIGUSR1)])
def test_a_signal_to_the_launcher_alone_reaches_every_rank_and_none_outlives_it(base_model, tmp_path, launcher, sent):
    port = free_port()
    args = ["configs/demo.yaml", f"output_dir={tmp_path}", f"model.base={base_model}", *COMMON,
            "train.max_steps=200", "train.save_steps=1000"]
    if launcher == "deepspeed":
        command = [str(BIN / "deepspeed"), "--num_gpus", "2", "--master_port", str(port), "launch/train.py",
                   "--config", *args]
    else:
        command = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(port), "-m", "grouprp",
                   "train", *args]
    log = tmp_path / "console.txt"
    process = launch_in_session(command, log, ignore_usr1=False)
    wait_for(log, "training: 2/", process)
    process.send_signal(sent)  # the launcher alone: it dies (deepspeed's command does not pass signals on)
    process.wait(timeout=120)
    # the ranks saw it go, saved, and ended
    assert until_gone(f"output_dir={tmp_path}") == [], log.read_text()[-3000:]
    assert port_is_free(port) and buffers_left(port) == []
    saved = list((tmp_path / "checkpoints").glob("checkpoint-*"))
    assert len(saved) == 1 and checkpoint_problem(saved[0]) is None, (saved, log.read_text()[-3000:])
    text = log.read_text()
    assert "the launcher (pid" in text and "is gone" in text and "exit 75" in text
    assert "stopping after step" in text


def test_with_checkpointing_the_layers_are_checkpointed_and_lora_still_learns(tmp_path):
    """train.gradient_checkpointing, non-reentrant: the base is checkpointed and LoRA still gets gradients
    through the checkpointed layers, under the name this environment's transformers has for the switch."""
    import torch

    from grouprp.prepare import load_tokenizer
    from grouprp.train import _build_random_base, get_model

    cfg = load_config(ROOT / "configs" / "demo.yaml", [f"model.base={tmp_path / 'base'}", "model.load_in_8bit=false",
                                                        "model.random_init.num_hidden_layers=1",
                                                        "train.gradient_checkpointing=true"])
    _build_random_base(cfg, load_tokenizer(cfg))
    model = get_model(cfg)
    model.train()
    assert model.get_base_model().is_gradient_checkpointing
    model(input_ids=torch.tensor([[1, 5, 9, 12]]), labels=torch.tensor([[1, 5, 9, 12]])).loss.backward()
    lora = [p.grad for name, p in model.named_parameters() if "lora_B" in name]  # A gets none while B is 0
    assert lora and all(g is not None and g.abs().sum() > 0 for g in lora)
