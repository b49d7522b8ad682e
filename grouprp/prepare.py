"""`prepare`: data files -> tokenized dataset on disk + manifest.json, cached by a fingerprint of everything used.

Two steps. In this process the sources are read and checked (malformed input raises or is counted) and the raw
threads are streamed to an Arrow file. Then `datasets.map` with `num_proc` workers does the heavy part in
parallel: cleaning, filters, rendering, tokenization and windowing. The manifest is assembled from what the
workers report, so every thread read is accounted for.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Union

import numpy as np

from grouprp.config import Config, DataConfig, to_dict
from grouprp.filters import Accounting, Dropped, build_entry, filter_reason
from grouprp.formats import get_format
from grouprp.schema import DataError, Malformed, Thread
from grouprp.sheets import SheetSchema
from grouprp.tokenize import encode_batch, split_into_windows

log = logging.getLogger("grouprp")

DATASET_DIR = "dataset"
MANIFEST = "manifest.json"
_CODE_FILES = ("clean.py", "sheets.py", "filters.py", "tokenize.py", "schema.py", "prepare.py", "single.py", "formats",
               "sources")
_MAP_BATCH = 64
_WRITE_BATCH = 512


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
    """Build (or reuse) the tokenized dataset in `output_dir/dataset` and its `manifest.json`."""
    tokenizer = tokenizer or load_tokenizer(cfg)
    output_dir = Path(cfg.output_dir)
    fingerprint = data_fingerprint(cfg, tokenizer)
    manifest_path = output_dir / MANIFEST
    if not force and manifest_path.exists() and (output_dir / DATASET_DIR).exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("fingerprint") == fingerprint:
            log.info("reusing the prepared dataset in %s (same data, config, tokenizer and format code)",
                     output_dir / DATASET_DIR)
            return Prepared(output_dir / DATASET_DIR, manifest, reused=True)
        log.info("rebuilding the dataset: data, config, tokenizer or format code changed since the last prepare")

    started = time.perf_counter()
    work = output_dir / ".prepare-tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        accounting = Accounting()
        records = _checked(_records(cfg), cfg.data, accounting)
        raw_file = _write_records(records, work / "records.arrow")
        dataset = _tokenize_all(raw_file, cfg, tokenizer, accounting, work)
        target = output_dir / DATASET_DIR
        shutil.rmtree(target, ignore_errors=True)
        dataset.save_to_disk(str(target))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    manifest = _manifest(cfg, dataset, accounting, fingerprint, time.perf_counter() - started)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("prepared %d examples from %d of %d entries in %.1fs -> %s", manifest["examples"],
             manifest["entries_kept"], manifest["entries_in"], manifest["seconds"], target)
    return Prepared(target, manifest, reused=False)


def _records(cfg: Config) -> Iterator:
    """What the workers turn into examples: threads, or replies in single-character mode."""
    if cfg.data.template == "alichat":
        from grouprp.single import read_replies

        return read_replies(cfg)
    from grouprp.sources import read_threads

    return read_threads(cfg.data)


def _checked(records: Iterable, cfg: DataConfig, accounting: Accounting) -> Iterator:
    """Pass threads on; raise on malformed input, or count it when `data.on_error: skip`."""
    for record in records:
        accounting.entries_in += 1
        if isinstance(record, Malformed):
            if cfg.on_error == "raise":
                raise DataError(f"{record.message()}. Fix the input, or set data.on_error=skip to count and skip it")
            accounting.dropped["malformed"] += 1
            log.warning("skipped malformed input: %s", record.message())
            continue
        yield record


def _write_records(records: Iterable, path: Path) -> Path:
    """Stream records into an Arrow IPC file that `datasets` can memory-map, a batch at a time."""
    import pyarrow as pa

    schema = pa.schema([("index", pa.int64()), ("record", pa.large_string())])
    batch: list[str] = []
    count = 0
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for record in records:
            batch.append(record.to_json())
            if len(batch) == _WRITE_BATCH:
                writer.write_batch(_record_batch(batch, count, schema))
                count += len(batch)
                batch = []
        if batch or count == 0:
            writer.write_batch(_record_batch(batch, count, schema))
    return path


def _record_batch(records: list[str], first_index: int, schema):
    import pyarrow as pa

    return pa.record_batch([pa.array(range(first_index, first_index + len(records)), pa.int64()),
                            pa.array(records, pa.large_string())], schema=schema)


class ThreadTokenizer:
    """The `datasets.map` worker: threads -> entries -> examples (windowed when too long) -> tokens + labels.

    One output row per example; an entry that yields no example leaves one row saying why (`drop`), so the
    main process can account for it.
    """

    def __init__(self, cfg: DataConfig, tokenizer):
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.schema = SheetSchema(cfg.sheet_schema)
        self.format = get_format(cfg.template, bool(cfg.train_on_names))
        self._window_tokens: dict[str, Any] = {}  # rendered window text -> its tokens, for one entry at a time

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        rows = ExampleRows()
        kept = []
        for index, record in zip(batch["index"], batch["record"]):
            result = build_entry(Thread.from_json(record), self.cfg, self.schema)
            if isinstance(result, Dropped):
                rows.drop(index, result.reason, result.posts_removed)
            else:
                kept.append((index, result))
        examples = [self.format.render(k.entry) for _, k in kept]
        for (index, result), tokens in zip(kept, encode_batch(examples, self.tokenizer)):
            entry = result.entry
            if len(tokens.input_ids) <= self.cfg.sequence_len:
                rows.example(index, entry.id, tokens, len(entry.turns), len(entry.characters), result.posts_removed)
                continue
            self._window_tokens = {}
            plan = split_into_windows(entry, self.fits, lambda w: filter_reason(w, self.cfg) is None)
            if not plan.windows:
                rows.drop(index, "too_long", result.posts_removed)
                continue
            # most kept windows were encoded while searching for where to cut (not those moved back off a user post)
            windows = [self._window_tokens.get(example.text) or encode_batch([example], self.tokenizer)[0]
                       for example in (self.format.render(w) for w in plan.windows)]
            for number, (window, window_tokens) in enumerate(zip(plan.windows, windows)):
                rows.example(index, window.id, window_tokens, len(window.turns), len(window.characters),
                             result.posts_removed if number == 0 else Counter(),
                             windows_dropped=plan.dropped if number == 0 else 0)
        return rows.columns

    def fits(self, window) -> bool:
        """Whether a window's rendered tokens fit sequence_len (remembering them for the window's row)."""
        example = self.format.render(window)
        tokens = encode_batch([example], self.tokenizer)[0]
        self._window_tokens[example.text] = tokens
        return len(tokens.input_ids) <= self.cfg.sequence_len


class ExampleRows:
    """Column-wise output of one map batch."""

    NAMES = ("index", "id", "input_ids", "labels", "length", "trained", "turns", "characters", "drop", "removed",
             "windows_dropped")

    def __init__(self) -> None:
        self.columns: dict[str, list] = {name: [] for name in self.NAMES}

    def example(self, index: int, example_id: str, tokens, turns: int, characters: int, removed: Counter,
                windows_dropped: int = 0) -> None:
        self._add(index, example_id, tokens.input_ids, tokens.labels, tokens.trained, turns, characters, "", removed,
                  windows_dropped)

    def drop(self, index: int, reason: str, removed: Counter) -> None:
        self._add(index, "", [], [], 0, 0, 0, reason, removed, 0)

    def _add(self, index, example_id, input_ids, labels, trained, turns, characters, drop, removed, windows_dropped):
        values = (index, example_id, input_ids, labels, len(input_ids), trained, turns, characters, drop,
                  json.dumps(dict(removed)), windows_dropped)
        for name, value in zip(self.NAMES, values):
            self.columns[name].append(value)


def _tokenize_all(raw_file: Path, cfg: Config, tokenizer, accounting: Accounting, work: Path):
    """The map over all records; fills `accounting` from what the workers report, returns the kept examples."""
    from datasets import Dataset, Features, Sequence, Value, disable_progress_bars

    disable_progress_bars()
    raw = Dataset.from_file(str(raw_file))
    num_proc = max(1, min(cfg.data.num_proc, len(raw) // _MAP_BATCH or 1))
    if num_proc > 1:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one tokenizer thread per worker process
    features = Features({"index": Value("int64"), "id": Value("string"), "input_ids": Sequence(Value("int32")),
                         "labels": Sequence(Value("int32")), "length": Value("int32"), "trained": Value("int32"),
                         "turns": Value("int32"), "characters": Value("int32"), "drop": Value("string"),
                         "removed": Value("string"), "windows_dropped": Value("int32")})
    worker = _worker_for(cfg.data, tokenizer)
    if len(raw) == 0:  # nothing survived reading, and map would not even create the columns
        mapped = Dataset.from_dict({name: [] for name in features}, features=features)
    else:
        mapped = raw.map(worker, batched=True, batch_size=_MAP_BATCH, num_proc=num_proc, features=features,
                         remove_columns=raw.column_names, load_from_cache_file=False,
                         cache_file_name=str(work / "mapped.arrow"), new_fingerprint="grouprp-map")
    _account(mapped, accounting)
    examples = mapped.filter(lambda drop: [d == "" for d in drop], input_columns="drop", batched=True,
                             batch_size=1000, cache_file_name=str(work / "kept.arrow"),
                             new_fingerprint="grouprp-kept")
    # save_to_disk writes only the kept rows, so the filter's index mapping needs no flattening copy first
    return examples.select_columns(["id", "input_ids", "labels", "length", "trained", "turns", "characters"])


def _worker_for(cfg: DataConfig, tokenizer) -> Callable[[dict], dict]:
    if cfg.template == "alichat":
        from grouprp.single import ReplyTokenizer

        return ReplyTokenizer(cfg, tokenizer)
    return ThreadTokenizer(cfg, tokenizer)


def _account(mapped, accounting: Accounting) -> None:
    kept_entries = set()
    for batch in mapped.select_columns(["index", "drop", "removed", "windows_dropped"]).iter(batch_size=10_000):
        for index, drop, removed, windows_dropped in zip(batch["index"], batch["drop"], batch["removed"],
                                                         batch["windows_dropped"]):
            accounting.posts_removed.update(json.loads(removed))
            accounting.windows_dropped["too_long"] += windows_dropped
            if drop:
                accounting.dropped[drop] += 1
            else:
                kept_entries.add(index)
    accounting.entries_kept = len(kept_entries)
    accounting.check()


def _manifest(cfg: Config, dataset, accounting: Accounting, fingerprint: str, seconds: float) -> dict[str, Any]:
    lengths = np.asarray(dataset["length"], dtype=np.int64)
    trained = np.asarray(dataset["trained"], dtype=np.int64)
    return {
        **accounting.to_dict(),
        "examples": len(dataset),
        "tokens": int(lengths.sum()),
        "trained_tokens": int(trained.sum()),
        "template": cfg.data.template,
        "sequence_len": cfg.data.sequence_len,
        "tokenizer": cfg.tokenizer_path,
        "stats": {
            "tokens_per_example": _percentiles(lengths),
            "turns_per_example": _percentiles(np.asarray(dataset["turns"])),
            "characters_per_example": _percentiles(np.asarray(dataset["characters"])),
            "trained_share": float(trained.sum() / lengths.sum()) if lengths.sum() else 0.0,
        },
        "fingerprint": fingerprint,
        "seconds": round(seconds, 2),
    }


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {}
    points = {"min": 0, "p10": 10, "p50": 50, "p90": 90, "p99": 99, "max": 100}
    out = {name: float(np.percentile(values, q)) for name, q in points.items()}
    out["mean"] = float(values.mean())
    return out


def data_fingerprint(cfg: Config, tokenizer) -> str:
    """Hash of the input bytes, the data config, the tokenizer and the code that renders and tokenizes."""
    from grouprp.sources import input_files

    digest = hashlib.sha256(b"grouprp-data-v1")
    files = input_files(cfg.data) + [Path(p) for p in (cfg.data.sheets, cfg.data.card) if p]
    for path in files:
        digest.update(str(path).encode())
        _hash_file(digest, path)
    data = to_dict(cfg.data)
    data.pop("num_proc")
    digest.update(json.dumps(data, sort_keys=True).encode())
    digest.update(tokenizer.backend_tokenizer.to_str().encode())
    digest.update(json.dumps([tokenizer.bos_token_id, tokenizer.eos_token_id]).encode())
    package = Path(__file__).parent
    for name in _CODE_FILES:
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

    output_dir = Path(output_dir)
    return load_from_disk(str(output_dir / DATASET_DIR)), json.loads((output_dir / MANIFEST).read_text())


def preview_examples(cfg: Config, limit: Optional[int], tokenizer=None) -> Iterator:
    """Rendered examples in input order, without tokenizing (windows only when a tokenizer is given)."""
    accounting = Accounting()
    if cfg.data.template == "alichat":
        from grouprp.single import ReplyTokenizer

        render = ReplyTokenizer(cfg.data, tokenizer).format.render
        for number, reply in enumerate(_checked(_records(cfg), cfg.data, accounting)):
            if limit is not None and number >= limit:
                return
            yield render(reply)
        return
    worker = ThreadTokenizer(cfg.data, tokenizer)  # renders; fits() is only called when there is a tokenizer
    shown = 0
    for thread in _checked(_records(cfg), cfg.data, accounting):
        result = build_entry(thread, cfg.data, worker.schema)
        if isinstance(result, Dropped):
            continue
        entries = [result.entry]
        if tokenizer is not None and not worker.fits(result.entry):
            entries = split_into_windows(result.entry, worker.fits,
                                         lambda w: filter_reason(w, cfg.data) is None).windows
        for entry in entries:
            yield worker.format.render(entry)
            shown += 1
            if limit is not None and shown >= limit:
                return
