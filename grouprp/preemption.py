"""Stopping for a signal without losing work: every rank stops after the same optimizer step, with a checkpoint.

Slurm asks a job to stop with SIGUSR1 (`--signal`, before a time limit) or SIGTERM (preemption, `scancel`); a
launcher may also be killed on its own, which used to leave its ranks training on as orphans. Each rank installs
handlers for SIGTERM and SIGUSR1 and watches its launcher process; either sets a request. At the end of every
optimizer step the ranks agree (one all-reduce of a flag, max over ranks) whether any was asked to stop, so they
all stop after the same step: the Trainer then saves its own full checkpoint (adapter, optimizer, scheduler, RNG
and data position), `CompleteCheckpoints` marks it complete once every rank has written its part, and training
ends. `grouprp train` exits with checkpoints.REQUEUE_EXIT (75); a requeued job resumes from that checkpoint
(`train.resume: auto`).

transformers' own just-in-time checkpoint (`TrainingArguments.enable_jit_checkpoint`) handles SIGTERM alone, on
each rank by itself and mid-step; what it lacks here is SIGUSR1, ranks agreeing on one stop step, and noticing a
launcher that is gone, so this does not use it. A second signal while the checkpoint is written is logged and
otherwise ignored; a kill during the save leaves a checkpoint without its completion marker, which resume skips.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Optional

from transformers import TrainerCallback


log = logging.getLogger("grouprp")

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
WATCH_SECONDS = 1.0
LAUNCHER_GONE = "its launcher exiting"
_REASONS = ("", "SIGTERM", "SIGUSR1", LAUNCHER_GONE)  # what asked to stop, as a number ranks can all-reduce


class Preempted(Exception):
    """Training stopped early for a signal, after the checkpoint of `step` was saved on every rank."""

    def __init__(self, reason: str, step: int, checkpoint: Path) -> None:
        super().__init__(f"stopped by {reason} after step {step}; checkpoint {checkpoint}")
        self.reason, self.step, self.checkpoint = reason, step, checkpoint


class Preemption(TrainerCallback):
    """Signal handlers, a launcher watch, and the per-step agreement; `stopped` holds why training ended early."""

    def __init__(self) -> None:
        self.requested: Optional[str] = None
        self.stopped: Optional[str] = None
        self._previous = {}
        self._done = threading.Event()
        for number in SIGNALS:
            self._previous[number] = signal.signal(number, self._on_signal)
        ancestors = launcher_processes()
        if ancestors:
            threading.Thread(target=self._watch, args=(ancestors,), name="grouprp-launcher-watch",
                             daemon=True).start()

    def _on_signal(self, number, frame) -> None:
        name = signal.Signals(number).name
        if self.requested is None or (self.requested == LAUNCHER_GONE and not self.stopped):
            self.requested = name
        elif self.stopped:
            log.warning("%s while the stop checkpoint is written: ignored (a kill now leaves an incomplete "
                        "checkpoint, which resume skips)", name)

    def _watch(self, ancestors: list[tuple[int, str]]) -> None:
        while not self._done.wait(WATCH_SECONDS):
            gone = [pid for pid, started in ancestors if _start_time(pid) != started]
            if gone:
                if self.requested is None:
                    log.warning("the launcher (pid %d) is gone: stopping after this step", gone[0])
                    self.requested = LAUNCHER_GONE
                return

    def on_step_end(self, args, state, control, **kwargs):
        reason = agreed(_REASONS.index(self.requested) if self.requested else 0)
        if reason:
            control.should_save = True
            control.should_training_stop = True
            control.should_evaluate = False  # time is short: the checkpoint, nothing else
            self.stopped = _REASONS[reason]
            if state.is_world_process_zero:
                log.warning("stopping after step %d (%s): saving a checkpoint on every rank", state.global_step,
                            self.stopped)
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.stopped:  # the loop ends the epoch early: no second save of the same step, no evaluation
            control.should_save = False
            control.should_evaluate = False
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self._done.set()

    def close(self) -> None:
        """Put back the handlers that were there before (after training; a signal then ends the process)."""
        self._done.set()
        for number, previous in self._previous.items():
            signal.signal(number, previous if previous is not None else signal.SIG_DFL)


def agreed(value: int) -> int:
    """The largest of every rank's `value` (one all-reduce; `value` itself without a process group)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([value], dtype=torch.int32, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def launcher_processes() -> list[tuple[int, str]]:
    """The launcher processes this rank runs under, as (pid, start time): its parent when a launcher started it
    (LOCAL_RANK is set), and, under deepspeed, the `deepspeed` command above `deepspeed.launcher.launch`. Empty
    when not under a launcher or not on Linux (/proc)."""
    if "LOCAL_RANK" not in os.environ or not Path("/proc/self/stat").exists():
        return []
    parent = os.getppid()
    out = [(parent, _start_time(parent))]
    if "deepspeed.launcher.launch" in _command_line(parent):
        runner = _parent_of(parent)
        if runner and runner > 1:
            out.append((runner, _start_time(runner)))
    return [(pid, started) for pid, started in out if started]


def _stat(pid: int) -> list[str]:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return text[text.rindex(")") + 2:].split()  # the fields after the command name, which may hold spaces


def _start_time(pid: int) -> str:
    """The process's start time (a pid can be reused; pid and start time cannot); "" when it is gone."""
    fields = _stat(pid)
    return fields[19] if len(fields) > 19 and fields[0] != "Z" else ""


def _parent_of(pid: int) -> Optional[int]:
    fields = _stat(pid)
    return int(fields[1]) if len(fields) > 1 else None


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
