"""Progress of a long loop: a tqdm bar when stderr is a terminal, else a plain log line every few seconds.

Used by `prepare` (threads or replies per second) and by training (steps); a log file or a Slurm output file
gets readable lines instead of a bar's carriage returns.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Optional

log = logging.getLogger("grouprp")


class Progress:
    """Counts work done; `update(n, **shown)` adds to the count and shows the extra values beside it."""

    def __init__(self, desc: str, unit: str, total: Optional[int] = None, every: float = 10.0,
                 initial: int = 0) -> None:
        self.desc, self.unit, self.total, self.every = desc, unit, total, every
        self.count = initial
        self.initial = initial
        self.started = time.perf_counter()
        self.reported = self.started
        self.reported_count = -1
        self.shown: dict[str, str] = {}
        self.enabled = True  # until closed
        self.bar = None
        if sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=f" {unit}", dynamic_ncols=True,
                            leave=True)

    def update(self, n: int = 1, report: Optional[bool] = None, **shown: str) -> None:
        """Add `n` done; outside a terminal a line is logged when `report` is true, or (when it is None) once
        `every` seconds have passed since the last one."""
        self.count += n
        self.shown.update(shown)
        if self.bar is not None:
            self.bar.update(n)
            if shown:
                self.bar.set_postfix(self.shown, refresh=True)
        elif self.enabled and (report or (report is None and time.perf_counter() - self.reported >= self.every)):
            self._report()

    def _report(self) -> None:
        self.reported = time.perf_counter()
        self.reported_count = self.count
        log.info("%s", self.line())

    def write(self, message: str) -> None:
        """A message that should not break the bar (a line of its own either way)."""
        if self.bar is not None:
            self.bar.write(message)
        elif self.enabled:
            log.info("%s", message)

    def line(self) -> str:
        """`desc: 1,200/4,000 threads (310 threads/s, about 9 s left), loss 2.1`."""
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = (self.count - self.initial) / elapsed
        done = f"{self.count:,}/{self.total:,}" if self.total else f"{self.count:,}"
        timing = f"{rate:,.{0 if rate >= 10 else 1}f} {self.unit}/s"
        if self.total and rate > 0 and self.count < self.total:
            timing += f", about {_duration((self.total - self.count) / rate)} left"
        elif self.count >= (self.total or self.count) and self.count:
            timing += f", {_duration(elapsed)}"
        extra = "".join(f", {k} {v}" for k, v in self.shown.items())
        return f"{self.desc}: {done} {self.unit} ({timing}){extra}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled and self.count and self.count != self.reported_count:
            self._report()
        self.enabled = False


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
