"""Checkpoints that count only once complete.

The Trainer writes a checkpoint's files in place, rank by rank; a kill in the middle leaves a folder that looks
like a checkpoint but cannot be resumed from. grouprp writes a marker last, `grouprp-complete.json`, listing every
file of the checkpoint and its size, once every rank has finished. `train.resume: auto` takes the latest checkpoint
whose marker is there and whose files are all present at their recorded sizes; any newer, incomplete one is moved
aside (renamed `checkpoint-N.incomplete-<time>`) with a warning, so neither grouprp nor the Trainer ever loads it.
Old checkpoints are deleted only after a newer one is marked complete.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Optional

log = logging.getLogger("grouprp")

MARKER = "grouprp-complete.json"
REQUEUE_EXIT = 75
"""The exit code of a run stopped by a signal after saving a checkpoint (EX_TEMPFAIL: try again). Job scripts
requeue on it; the requeued run resumes from the checkpoint."""
TRANSFORMERS_INCOMPLETE = "checkpoint-is-incomplete.txt"  # the sentinel of transformers' SIGTERM checkpoints
_NAME = re.compile(r"^checkpoint-(\d+)$")


def mark_complete(folder: Path, step: int) -> None:
    """Record every file of a finished checkpoint and its size; written last, atomically."""
    files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != MARKER}
    tmp = folder / f".{MARKER}.tmp"
    tmp.write_text(json.dumps({"step": step, "files": files}, indent=1) + "\n")
    os.replace(tmp, folder / MARKER)


def checkpoint_problem(folder: Path) -> Optional[str]:
    """Why a checkpoint folder cannot be resumed from, or None when it is complete."""
    if not folder.is_dir():
        return "is not a checkpoint folder"
    if (folder / TRANSFORMERS_INCOMPLETE).exists():
        return "was left incomplete (its save did not finish)"
    try:
        marker = json.loads((folder / MARKER).read_text())
        files = marker["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"has no completion marker ({MARKER}): its save did not finish"
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            return f"is missing {name}"
        if path.stat().st_size != size:
            return f"has {name} truncated or changed ({path.stat().st_size:,} of {size:,} bytes)"
    return None


def checkpoints(folder: Path) -> list[Path]:
    """Checkpoint folders, newest (highest step) first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)), reverse=True)


def latest_complete(folder: Path, tidy: bool) -> Optional[Path]:
    """The newest complete checkpoint. Newer incomplete ones are reported and, when `tidy` (one process only),
    moved aside so that nothing loads them."""
    for candidate in checkpoints(folder):
        problem = checkpoint_problem(candidate)
        if problem is None:
            return candidate
        if tidy:
            aside = candidate.with_name(f"{candidate.name}.incomplete-{int(time.time())}")
            candidate.rename(aside)
            log.warning("%s %s; moved to %s and not resumed from", candidate, problem, aside.name)
    return None


def rotate(folder: Path, keep: int) -> None:
    """Delete complete checkpoints beyond the newest `keep` (incomplete ones are never counted or kept)."""
    complete = [p for p in checkpoints(folder) if checkpoint_problem(p) is None]
    for old in complete[keep:]:
        shutil.rmtree(old, ignore_errors=True)
