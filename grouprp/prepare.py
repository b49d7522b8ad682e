"""`prepare`: data files -> tokenized dataset on disk + manifest.json, cached by a fingerprint of everything used.

One pipeline for every command and both modes. The mode reads records (malformed ones raise, or are counted
under `data.on_error: skip`) and they are staged to an Arrow file; the mode's `build` turns batches of them into
examples in `data.num_proc` worker processes; the rows are written with datasets' Arrow writer and the
manifest is assembled from what each record became, so every entry read is accounted for. `preview` runs the
same read and build in this process, and `stats` the whole pipeline without writing anything.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from grouprp.config import Config, ConfigError, DataConfig, to_dict
from grouprp.filters import Accounting
from grouprp.quality.duplicates import ThreadIndex
from grouprp.quality.genres import main_genre, over_cap, shares
from grouprp.quality.review import DETECTORS
from grouprp.modes import ExampleRow, Mode, Outcome, get_mode
from grouprp.packing import fill
from grouprp.progress import Progress
from grouprp.schema import DataError, Example, Malformed
from grouprp.tokenize import Encoder

log = logging.getLogger("grouprp")

DATASET_DIR = "dataset"
MANIFEST = "manifest.json"
_CODE = ("schema.py", "clean.py", "sheets.py", "filters.py", "tokenize.py", "prepare.py", "formats", "sources",
         "modes", "quality", "quality/genres.yaml")
_BATCH = 64  # records per task: small enough to balance the workers, large enough to batch the tokenizer


@dataclass
class Prepared:
    dataset_path: Path
    manifest: dict[str, Any]
    reused: bool


def load_tokenizer(cfg: Config):
    """The fast tokenizer named by model.tokenizer (or model.base); offsets are needed to build labels."""
    from transformers import AutoTokenizer

    path = cfg.tokenizer_path
    if not path:
        raise DataError("model.tokenizer: no tokenizer configured; set model.tokenizer or model.base")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code)
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"model.tokenizer: cannot load a tokenizer from {path!r} ({first_line})") from None
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(f"model.tokenizer: {path!r} has no fast (Rust) tokenizer; labels need its character offsets")
    return tokenizer


def prepare(cfg: Config, tokenizer=None, force: bool = False) -> Prepared:
    """Build (or reuse) the tokenized dataset in `output_dir/dataset` and its `manifest.json`.

    The new dataset is written beside the old one and swapped in only when complete, with a copy of its manifest
    inside it: a run killed half-way leaves the previous dataset (or none), never a partial one.
    """
    tokenizer = tokenizer or load_tokenizer(cfg)
    mode = get_mode(cfg)
    output_dir = Path(cfg.output_dir)
    target = output_dir / DATASET_DIR
    fingerprint = data_fingerprint(cfg, tokenizer, mode)
    if not force:
        manifest, why_not = _reusable(target, fingerprint)
        if manifest is not None:
            log.info("reusing the prepared dataset in %s (same data, config, tokenizer and format code)", target)
            return Prepared(target, manifest, reused=True)
        if why_not:
            log.info("rebuilding the dataset: %s", why_not)

    output_dir.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(output_dir)
    work = Path(tempfile.mkdtemp(prefix=f".prepare-{os.getpid()}-", dir=output_dir))
    try:
        started = time.perf_counter()
        writer = ExampleWriter(work / "examples.arrow")
        summary = run_pipeline(cfg, mode, Encoder(tokenizer), work, writer)
        dataset = writer.finish()
        manifest = summary.manifest(cfg, fingerprint, time.perf_counter() - started, mode.quality is not None)
        staged = work / DATASET_DIR
        # an empty dataset needs one shard named: with none, datasets writes no data file and cannot load it back
        dataset.save_to_disk(str(staged), num_shards=None if len(dataset) else 1)
        _write_json(staged / MANIFEST, manifest)
        del dataset  # the memory-mapped examples file is removed with `work`
        _swap_in(staged, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _write_json(output_dir / MANIFEST, manifest)
    log.info("prepared %d examples from %d of %d entries in %.1fs -> %s", manifest["examples"],
             manifest["entries_kept"], manifest["entries_in"], manifest["seconds"], target)
    return Prepared(target, manifest, reused=False)


def summarize(cfg: Config, tokenizer=None) -> dict[str, Any]:
    """The manifest `prepare` would write, without writing anything (the prepared one when it is current), with
    what training would make of it under `steps`: rows, token efficiency, and what one optimizer step sees."""
    tokenizer = tokenizer or load_tokenizer(cfg)
    mode = get_mode(cfg)
    fingerprint = data_fingerprint(cfg, tokenizer, mode)
    target = Path(cfg.output_dir) / DATASET_DIR
    manifest, _ = _reusable(target, fingerprint)
    if manifest is not None:
        log.info("from the prepared dataset in %s", target)
        from datasets import load_from_disk

        lengths = load_from_disk(str(target))["length"]
    else:
        summary, manifest = dry_run(cfg, tokenizer, mode, fingerprint)
        lengths = summary.lengths
    rows = fill(lengths, cfg.data.sequence_len, cfg.train.packing)
    examples, tokens = rows.per_step(cfg.train.global_batch_size)
    return {**manifest, "steps": {"packing": cfg.train.packing, "rows": rows.rows,
                                  "token_efficiency": round(rows.efficiency, 4),
                                  "rows_per_step": cfg.train.global_batch_size,
                                  "examples_per_step": round(examples, 2), "tokens_per_step": round(tokens)}}


def dry_run(cfg: Config, tokenizer, mode: Mode, fingerprint: str,
            on_outcome: Optional[Callable[[Outcome], None]] = None) -> tuple["Summary", dict[str, Any]]:
    """The whole pipeline with nothing written (stats, inspect): its Summary and the manifest prepare would write."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grouprp-dry-run-") as work:
        summary = run_pipeline(cfg, mode, Encoder(tokenizer), Path(work), writer=None, on_outcome=on_outcome)
    return summary, summary.manifest(cfg, fingerprint, time.perf_counter() - started, mode.quality is not None)


def preview_examples(cfg: Config, limit: Optional[int], tokenizer=None) -> Iterator[tuple[str, Example]]:
    """(id, rendered example) in input order, built exactly as `prepare` builds them; without a tokenizer nothing
    is measured, so long threads are not windowed and long histories not trimmed."""
    return ((row.id, row.example) for row in itertools.islice(example_rows(cfg, tokenizer), limit))


def example_rows(cfg: Config, tokenizer=None) -> Iterator[ExampleRow]:
    """Every example `prepare` would write, with its rendered text, in input order, built in this process: later
    copies of a repeated thread left out under data.quality.duplicates=drop, and under data.quality.max_genre_share
    the threads the cap leaves out (which takes a first pass over all the data to decide)."""
    mode = get_mode(cfg)
    encoder = Encoder(tokenizer) if tokenizer is not None else None
    quality = cfg.data.quality if mode.quality is not None else None

    def deduplicated() -> Iterator[Outcome]:
        """Every outcome, later copies emptied under duplicates=drop (flagging changes no example)."""
        repeats = Repeats(quality.duplicates) if quality is not None and quality.duplicates.mode == "drop" else None
        for outcome in _built(mode, cfg, encoder, Accounting()):
            if repeats is not None:
                repeats.check(outcome)
            yield outcome

    capped: set[str] = set()
    if quality is not None and quality.max_genre_share is not None:
        log.info("data.quality.max_genre_share: a first pass over the data decides which threads the cap leaves out")
        kept = [(outcome.key, main_genre(tuple(outcome.genres))) for outcome in deduplicated() if outcome.rows]
        capped = {kept[i][0] for i in _over_cap([genre for _, genre in kept], quality.max_genre_share, quality.seed)}
    for outcome in deduplicated():
        if outcome.key not in capped:
            yield from outcome.rows


def _over_cap(mains: list[str], max_share: float, seed: int) -> set[int]:
    try:
        return over_cap(mains, max_share, seed)
    except ValueError as exc:
        raise DataError(f"data.quality.max_genre_share={max_share}: {exc}. Raise the cap, or name more genres in a "
                        "lexicon of your own (data.quality.genres)") from None


def _built(mode: Mode, cfg: Config, encoder: Optional[Encoder], accounting: Accounting) -> Iterator[Outcome]:
    for record in checked(mode.read(accounting), cfg.data, accounting):
        yield from mode.build([record], encoder)


def checked(records: Iterable, cfg: DataConfig, accounting: Accounting) -> Iterator:
    """Pass records on; raise on malformed input, or count it when `data.on_error: skip`."""
    for record in records:
        accounting.entries_in += 1
        if isinstance(record, Malformed):
            if cfg.on_error == "raise":
                raise DataError(f"{record.message()}. Fix the input, or set data.on_error=skip to count and skip it")
            accounting.dropped["malformed"] += 1
            log.warning("skipped malformed input: %s", record.message())
            continue
        yield record


@dataclass
class Summary:
    """What the pipeline saw: the accounting of entries and posts, the sizes of the examples kept, and what the
    data-quality checks that need every record (repeated threads, the genre cap) decided."""

    accounting: Accounting = field(default_factory=Accounting)
    lengths: list[int] = field(default_factory=list)
    trained: list[int] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)
    characters: list[int] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)  # for each row, which kept record it came from
    kept_keys: list[str] = field(default_factory=list)
    kept_genres: list[tuple[str, ...]] = field(default_factory=list)
    copies: list[dict] = field(default_factory=list)  # repeated threads: {thread, of, similarity, exact}
    genre_cap: Optional[dict] = None  # what data.quality.max_genre_share left out
    capped: set[str] = field(default_factory=set)  # the ids of the records it left out

    def add(self, outcome: Outcome) -> None:
        self.accounting.add(outcome)
        if outcome.rows:
            self.kept_keys.append(outcome.key)
            self.kept_genres.append(tuple(outcome.genres))
        for row in outcome.rows:
            self.lengths.append(len(row.tokens))
            self.trained.append(row.tokens.trained)
            self.turns.append(row.turns)
            self.characters.append(row.characters)
            self.owners.append(len(self.kept_keys) - 1)

    def cap_genres(self, max_share: float, seed: int) -> Optional[np.ndarray]:
        """Leave out whole kept records so that no genre is above `max_share`; the rows that stay (None: all)."""
        mains = [main_genre(g) for g in self.kept_genres]
        out = _over_cap(mains, max_share, seed)
        self.genre_cap = {"max_share": max_share, "seed": seed, "shares_before": shares(mains),
                          "left_out": dict(sorted(Counter(mains[i] for i in out).items()))}
        if not out:
            return None
        if len(out) > len(mains) / 2:
            log.warning("data.quality.max_genre_share=%s leaves out %d of %d threads (main genres %s)", max_share,
                        len(out), len(mains), self.genre_cap["shares_before"])
        self.capped = {self.kept_keys[i] for i in out}
        self.accounting.entries_kept -= len(out)
        self.accounting.dropped["max_genre_share"] += len(out)
        keep = np.asarray([owner not in out for owner in self.owners], dtype=bool)
        for name in ("lengths", "trained", "turns", "characters", "owners"):
            setattr(self, name, [v for v, k in zip(getattr(self, name), keep) if k])
        self.kept_keys = [k for i, k in enumerate(self.kept_keys) if i not in out]
        self.kept_genres = [g for i, g in enumerate(self.kept_genres) if i not in out]
        return np.flatnonzero(keep)

    def quality(self, cfg: DataConfig) -> dict[str, Any]:
        """The manifest's `quality` block: what each detector found and did, and the genres."""
        q, a = cfg.quality, self.accounting

        def kinds(detector: str) -> dict[str, int]:
            prefix = f"{detector}:"
            return {k[len(prefix):]: n for k, n in sorted(a.kinds.items()) if k.startswith(prefix)}

        out = {}
        for name in DETECTORS:
            out[name] = {"mode": getattr(q, name).mode, "posts_found": a.found.get(name, 0),
                         "posts_trimmed": a.posts_changed.get(name, 0), "kinds": kinds(name)}
            if name != "ooc":  # the cleaning rules remove OOC posts too: posts_removed.ooc counts both
                out[name]["posts_removed"] = a.posts_removed.get(name, 0)
        out["duplicates"].update({"threads_found": len(self.copies),
                                  "threads_exact": sum(c["exact"] for c in self.copies),
                                  "threads_dropped": a.dropped.get("duplicates", 0), "copies": self.copies[:50]})
        mains = [main_genre(g) for g in self.kept_genres]
        out["genres"] = {"shares": shares(mains), "tagged": dict(sorted(Counter(
            genre for g in self.kept_genres for genre in g).items())), "max_share": q.max_genre_share}
        if self.genre_cap is not None:
            out["genres"].update({"shares_before_cap": self.genre_cap["shares_before"],
                                  "left_out": self.genre_cap["left_out"]})
        return out

    def manifest(self, cfg: Config, fingerprint: str, seconds: float, quality: bool = False) -> dict[str, Any]:
        lengths = np.asarray(self.lengths, dtype=np.int64)
        trained = np.asarray(self.trained, dtype=np.int64)
        out = {
            **self.accounting.to_dict(),
            "examples": len(lengths),
            "tokens": int(lengths.sum()),
            "trained_tokens": int(trained.sum()),
            "template": cfg.data.template,
            "sequence_len": cfg.data.sequence_len,
            "tokenizer": cfg.tokenizer_path,
            "stats": {
                "tokens_per_example": _percentiles(lengths),
                "turns_per_example": _percentiles(np.asarray(self.turns)),
                "characters_per_example": _percentiles(np.asarray(self.characters)),
                "trained_share": float(trained.sum() / lengths.sum()) if lengths.sum() else 0.0,
            },
            "fingerprint": fingerprint,
            "seconds": round(seconds, 2),
        }
        if quality:
            out["quality"] = self.quality(cfg.data)
        return out


class Repeats:
    """data.quality.duplicates across records: each kept thread is a first copy or a copy of an earlier one,
    decided in input order in this process (the workers only sketch)."""

    def __init__(self, cfg) -> None:
        self.mode = cfg.mode
        self.index = ThreadIndex(cfg.threshold, cfg.num_perm)

    def check(self, outcome: Outcome) -> Optional[dict[str, Any]]:
        """The copy this outcome is (emptied under drop), for the manifest; None for a first copy."""
        if not outcome.rows or outcome.sketch is None:
            return None
        copy = self.index.add(outcome.key, outcome.sketch)
        if copy is None:
            return None
        if self.mode == "drop":
            outcome.rows, outcome.drop = [], "duplicates"
        return {"thread": outcome.key, "of": copy.of, "similarity": copy.similarity, "exact": copy.exact}


def run_pipeline(cfg: Config, mode: Mode, encoder: Encoder, work: Path, writer: Optional["ExampleWriter"],
                 on_outcome: Optional[Callable[[Outcome], None]] = None) -> Summary:
    """Read and check every record, build its examples (in parallel), and account for all of it. With
    `on_outcome`, each outcome is also handed to it with its rows' text and entries (for the report)."""
    summary = Summary()
    staged = _stage(mode, cfg.data, summary.accounting, work)
    quality = cfg.data.quality if mode.quality is not None else None
    repeats = Repeats(quality.duplicates) if quality is not None and quality.duplicates.mode != "off" else None
    progress = Progress("building examples", unit=mode.unit, total=len(staged))
    for outcome in _outcomes(mode, encoder, staged, cfg.data.num_proc, keep_text=on_outcome is not None):
        copy = repeats.check(outcome) if repeats is not None else None
        if copy is not None:
            summary.copies.append(copy)
        if on_outcome is not None:
            on_outcome(outcome)
        summary.add(outcome)
        if writer is not None:
            writer.add(outcome.rows)
        progress.update(1)
    progress.close()
    if quality is not None and quality.max_genre_share is not None:
        keep = summary.cap_genres(quality.max_genre_share, quality.seed)
        if keep is not None and writer is not None:
            writer.keep_only(keep)
    summary.accounting.check()
    return summary


def _stage(mode: Mode, cfg: DataConfig, accounting: Accounting, work: Path):
    """Every checked record, serialized into an Arrow file the workers can memory-map."""
    from datasets import Dataset, Features, Value, disable_progress_bars

    disable_progress_bars()  # our own progress reports replace the library's
    features = Features({"record": Value("large_string")})
    progress = Progress("reading", unit=mode.unit)
    records = checked(mode.read(accounting), cfg, accounting)
    first = next(records, None)
    if first is None:  # nothing readable at all; from_generator refuses an empty generator
        return Dataset.from_dict({"record": []}, features=features)

    def rows():
        for record in itertools.chain([first], records):
            progress.update(1)
            yield {"record": record.to_json()}

    from datasets.exceptions import DatasetGenerationError

    try:
        # the fingerprint only names the cache entry inside `work`, which is new for every run
        staged = Dataset.from_generator(rows, features=features, cache_dir=str(work / "staged"),
                                        fingerprint=f"grouprp-{os.getpid()}")
    except DatasetGenerationError as exc:  # datasets wraps what the reader raised: a user's error is ours to show
        if isinstance(exc.__cause__, (DataError, ConfigError)):
            raise exc.__cause__ from None
        raise
    progress.close()
    return staged


@dataclass
class _Job:
    """What each worker needs: built once, inherited by the forked workers rather than pickled."""

    mode: Mode
    encoder: Encoder
    staged: Any
    parent: int
    keep_text: bool = False


_job: Optional[_Job] = None


def _outcomes(mode: Mode, encoder: Encoder, staged, num_proc: int, keep_text: bool = False) -> Iterator[Outcome]:
    """The Outcome of every staged record, in order.

    A pool of our own rather than datasets.map: map hands each worker half of the data as one task and cannot tie
    its workers' lifetime to this process, so a killed prepare left workers running for minutes; small tasks also
    give a steady progress report.
    """
    job = _Job(mode, encoder, staged, os.getpid(), keep_text)
    slices = [(start, min(start + _BATCH, len(staged))) for start in range(0, len(staged), _BATCH)]
    processes = min(num_proc, len(slices))
    if processes <= 1:
        for bounds in slices:
            yield from _build_slice(job, bounds)
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one tokenizer thread per worker process
    with multiprocessing.get_context("fork").Pool(processes, initializer=_start_worker, initargs=(job,)) as pool:
        for outcomes in pool.imap(_build_in_worker, slices):
            yield from outcomes


def _start_worker(job: _Job) -> None:
    global _job
    _job = job
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops the pool
    _die_with_parent(job.parent)


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when its parent dies, however it dies (Linux; elsewhere the pool's own
    clean-up on a normal exit is what there is)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


def _build_in_worker(bounds: tuple[int, int]) -> list[Outcome]:
    assert _job is not None, "worker started without its job"
    return _build_slice(_job, bounds)


def _build_slice(job: _Job, bounds: tuple[int, int]) -> list[Outcome]:
    records = [job.mode.record_type.from_json(text) for text in job.staged[bounds[0]:bounds[1]]["record"]]
    outcomes = job.mode.build(records, job.encoder)
    if job.keep_text:
        return outcomes
    for outcome in outcomes:  # the dataset keeps tokens, not text: do not ship the text back
        outcome.rows = [replace(row, example=None, entry=None) for row in outcome.rows]
    return outcomes


class ExampleWriter:
    """Rows of the prepared dataset, written in batches with datasets' own Arrow writer."""

    def __init__(self, path: Path, batch: int = 256) -> None:
        from datasets import Features, Sequence, Value
        from datasets.arrow_writer import ArrowWriter

        self.path = path
        self.features = Features({"id": Value("string"), "input_ids": Sequence(Value("int32")),
                                  "labels": Sequence(Value("int32")), "length": Value("int32"),
                                  "trained": Value("int32"), "turns": Value("int32"), "characters": Value("int32")})
        self.writer = ArrowWriter(features=self.features, path=str(path))
        self.batch = batch
        self.rows: list = []
        self.kept: Optional[np.ndarray] = None

    def add(self, rows: Sequence) -> None:
        self.rows.extend(rows)
        if len(self.rows) >= self.batch:
            self._flush()

    def _flush(self) -> None:
        rows, self.rows = self.rows, []
        self.writer.write_batch({
            "id": [r.id for r in rows], "input_ids": [r.tokens.input_ids for r in rows],
            "labels": [r.tokens.labels for r in rows], "length": [len(r.tokens) for r in rows],
            "trained": [r.tokens.trained for r in rows], "turns": [r.turns for r in rows],
            "characters": [r.characters for r in rows]})

    def keep_only(self, rows: np.ndarray) -> None:
        """Of the rows written, keep only these (by position) in the dataset `finish` returns."""
        self.kept = rows

    def finish(self):
        """Close the file and open it as a Dataset."""
        from datasets import Dataset

        if self.rows:
            self._flush()
        written = self.writer.finalize()[0]
        self.writer.close()
        if not written or (self.kept is not None and not len(self.kept)):
            # a file of no record batches saves, but does not load back
            return Dataset.from_dict({name: [] for name in self.features}, features=self.features)
        dataset = Dataset.from_file(str(self.path))
        return dataset if self.kept is None else dataset.select(self.kept)


def _reusable(target: Path, fingerprint: str) -> tuple[Optional[dict], str]:
    """The manifest of a complete prepared dataset with this fingerprint, or (None, why it cannot be used)."""
    manifest_path = target / MANIFEST
    if not target.exists():
        return None, ""
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None, f"{target} is incomplete (no readable {MANIFEST} in it)"
    if manifest.get("fingerprint") != fingerprint:
        return None, "data, config, tokenizer or format code changed since the last prepare"
    try:
        from datasets import load_from_disk

        if len(load_from_disk(str(target))) != manifest["examples"]:
            return None, f"{target} does not hold the {manifest['examples']} examples its manifest names"
    except Exception as exc:  # any failure to load means the files are damaged; say which and rebuild
        return None, f"{target} cannot be loaded ({type(exc).__name__}: {exc})"
    return manifest, ""


def _remove_leftovers(output_dir: Path) -> None:
    """Temporary folders of earlier prepares that were killed (their process is gone)."""
    for leftover in [*output_dir.glob(".prepare-*"), *output_dir.glob(f".{DATASET_DIR}-old-*")]:
        pid = leftover.name.split("-")[-1 if leftover.name.startswith(f".{DATASET_DIR}") else 1]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _swap_in(staged: Path, target: Path) -> None:
    """Replace `target` by the complete `staged` folder; in between, neither is ever partial."""
    old = target.with_name(f".{target.name}-old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    staged.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, data: dict) -> None:
    """Write JSON atomically: to a temporary name first, then renamed over the old file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {}
    points = {"min": 0, "p10": 10, "p50": 50, "p90": 90, "p99": 99, "max": 100}
    out = {name: float(np.percentile(values, q)) for name, q in points.items()}
    out["mean"] = float(values.mean())
    return out


def data_fingerprint(cfg: Config, tokenizer, mode: Optional[Mode] = None) -> str:
    """Hash of the input bytes, the data config, the tokenizer and the code that reads, renders and tokenizes."""
    mode = mode or get_mode(cfg)
    digest = hashlib.sha256(b"grouprp-data-v2")
    for path in mode.input_files():
        digest.update(str(path).encode())
        _hash_file(digest, path)
    data = to_dict(cfg.data)
    data.pop("num_proc")
    digest.update(json.dumps(data, sort_keys=True).encode())
    digest.update(tokenizer.backend_tokenizer.to_str().encode())
    digest.update(json.dumps([tokenizer.bos_token_id, tokenizer.eos_token_id]).encode())
    package = Path(__file__).parent
    for name in _CODE:
        for source in sorted((package / name).rglob("*.py")) if (package / name).is_dir() else [package / name]:
            _hash_file(digest, source)
    return digest.hexdigest()[:16]


def _hash_file(digest, path: Path) -> None:
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)


def load_prepared(output_dir: Union[str, Path]):
    """The dataset `prepare` wrote, and its manifest."""
    from datasets import load_from_disk

    target = Path(output_dir) / DATASET_DIR
    return load_from_disk(str(target)), json.loads((target / MANIFEST).read_text())
