"""Trainer callbacks: rank-0 progress with loss, trained tokens per second and ETA; ending a session early."""

from __future__ import annotations

import time
from pathlib import Path

from transformers import TrainerCallback

from grouprp.checkpoints import mark_complete, rotate
from grouprp.progress import Progress
from grouprp.tokenize import IGNORE_INDEX


class TrainedTokens:
    """Trainer mixin: counts the tokens that carry a label and logs their rate.

    The count is this rank's, times the world size: ranks see batches of the same length distribution, and a
    collective at every log step is not worth an exact number on a progress bar.
    """

    trained_tokens_seen = 0
    _rate_started: float | None = None

    def compute_loss(self, model, inputs, *args, **kwargs):
        if model.training:
            if self._rate_started is None:
                self._rate_started = time.perf_counter()
            self.trained_tokens_seen += int((inputs["labels"] != IGNORE_INDEX).sum())
        return super().compute_loss(model, inputs, *args, **kwargs)

    def log(self, logs, *args, **kwargs):
        if "loss" in logs and self._rate_started is not None:
            elapsed = max(time.perf_counter() - self._rate_started, 1e-9)
            logs["trained_tokens_per_second"] = round(self.trained_tokens_seen * self.args.world_size / elapsed, 1)
        return super().log(logs, *args, **kwargs)


class ProgressBar(TrainerCallback):
    """Rank 0 only: step, loss, trained tokens/s, elapsed and ETA (a bar in a terminal, lines in a log)."""

    def __init__(self) -> None:
        self.progress = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.progress = Progress("training", unit="steps", total=state.max_steps, initial=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(state.global_step - self.progress.count, report=False)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is None or not logs:
            return
        shown = {}
        if "loss" in logs:
            shown["loss"] = f"{logs['loss']:.4f}"
        if "trained_tokens_per_second" in logs:
            shown["tok/s"] = f"{logs['trained_tokens_per_second']:,.0f}"
        if "eval_loss" in logs:
            self.progress.write(f"step {state.global_step}: eval_loss {logs['eval_loss']:.4f}")
        if shown:
            self.progress.update(0, report="loss" in shown, **shown)

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.close()
            self.progress = None


class StopAfter(TrainerCallback):
    """End the session after N optimizer steps with a checkpoint; the LR schedule still spans the whole run."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.steps:
            control.should_save = True
            control.should_training_stop = True
        return control


class CompleteCheckpoints(TrainerCallback):
    """After each checkpoint save, once every rank has written its part: the completion marker, then the removal
    of complete checkpoints beyond `keep` (done here rather than by the Trainer, which deletes old checkpoints
    before the new one is known to be complete)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep

    def on_save(self, args, state, control, **kwargs):
        from accelerate import PartialState

        PartialState().wait_for_everyone()
        if state.is_world_process_zero:
            folder = Path(args.output_dir)
            mark_complete(folder / f"checkpoint-{state.global_step}", state.global_step)
            rotate(folder, self.keep)
        PartialState().wait_for_everyone()  # no rank moves on while a checkpoint it may resume from is deleted
