"""What grouprp prints: its own messages as `grouprp: ...` on stderr, and third-party warnings that ask nothing of
a grouprp user filtered out, each by its message at its source (never all warnings)."""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("grouprp")


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a message comes, not the one there was when logging was set up."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def launcher_rank() -> int:
    """This process's rank under a launcher (deepspeed, torchrun set RANK), 0 alone: rank 0 speaks for all."""
    return int(os.environ.get("RANK", "0"))


def setup_logging(level: int = logging.INFO) -> None:
    """grouprp's own messages to stderr as `grouprp: ...`; other libraries keep their own settings."""
    handler = _Stderr()
    handler.setFormatter(logging.Formatter("grouprp: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    # bitsandbytes warns on every 8-bit matmul whose inputs are not fp16 (always, on CPU): expected, and noise
    logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)


def quiet_third_party() -> None:
    """Filter, by message at their source, third-party warnings that ask nothing of a grouprp user."""
    import warnings

    for message in (r"`is_gradient_checkpointing` is deprecated",  # peft reads the old property name
                    r"`torch\.distributed\.all_gather_into_tensor` is deprecated"):  # deepspeed's ZeRO-2 gathers
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)
    # bitsandbytes tries an optional 4-bit CPU kernel at import; grouprp trains in 8 bits
    _drop_log_lines("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward")
    # the Trainer fills DeepSpeed's accumulation from train.global_batch_size; accelerate then reports its own
    # default of 1 as a "mismatch" and uses DeepSpeed's value, which is the right one
    _drop_log_lines("accelerate.accelerator", "Gradient accumulation steps mismatch")
    # on a machine without a GPU, DeepSpeed says at every import that it runs on the CPU
    _drop_log_lines("DeepSpeed", "Setting accelerator to CPU")


def _drop_log_lines(logger: str, text: str) -> None:
    """Drop the records of one logger whose message contains `text`; everything else it logs still shows."""
    target = logging.getLogger(logger)
    if not any(getattr(f, "dropped_text", None) == text for f in target.filters):
        line_filter = logging.Filter()
        line_filter.dropped_text = text
        line_filter.filter = lambda record: text not in record.getMessage()
        target.addFilter(line_filter)


