"""One pipeline for both modes: its shape (imports run one way), and prepare, preview and stats agreeing."""

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TOKENIZER, make_thread, write_jsonl
from grouprp import prepare as prepare_module
from grouprp.cli import main
from grouprp.config import load_config
from grouprp.prepare import load_prepared, prepare, preview_examples
from grouprp.progress import Progress
from grouprp.tokenize import encode_batch

PACKAGE = ROOT / "grouprp"
# lower layers never import higher ones: config/schema -> sources -> clean/sheets/filters -> formats -> tokenize
# -> modes -> prepare -> train/cli
LAYERS = {"config": 0, "schema": 0, "progress": 0, "logs": 0, "sources": 1, "clean": 2, "sheets": 2, "filters": 2,
          "quality": 2, "formats": 3, "tokenize": 4, "modes": 5, "prepare": 6, "packing": 5, "checkpoints": 6,
          "inference": 7, "loss": 7, "callbacks": 7, "preemption": 7, "train": 7, "report": 7, "chat": 8,
          "plan": 7, "slurm": 8, "evaluate": 8, "merge": 8, "presets": 8, "cli": 9, "__main__": 10, "__init__": 10}


def module_imports() -> dict[str, set[str]]:
    """grouprp module -> the grouprp modules it imports anywhere in its code, function bodies included."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("grouprp")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("grouprp"):
                targets.add(node.module)
                targets |= {f"{node.module}.{a.name}" for a in node.names}  # `from grouprp import prepare`
        graph[name] = targets
    return {name: {t for t in targets if t in graph and t != name} for name, targets in graph.items()}


def find_cycle(graph: dict[str, set[str]]):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"]


def test_package_imports_have_no_cycle_and_run_one_way():
    graph = module_imports()
    assert "grouprp.modes.single" in graph and "grouprp.prepare" in graph["grouprp.train"]  # the walk sees inside
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    upward = [(m, t) for m, targets in graph.items() for t in targets
              if layer(t) > layer(m) and t.split(".")[:2] != m.split(".")[:2]]
    assert not upward, upward


def test_a_cycle_is_found_where_there_is_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def long_threads_config(tmp_path, *overrides):
    rows = [make_thread(f"t{i}", ("Ann", "Bo", "Cy", "Bo") * 3) for i in range(4)]
    rows.append(make_thread("long", ("Ann", "Bo", "Cy", "Bo") * 15))
    for post in rows[-1]["posts"]:
        post["text"] += " The lantern swung in the wind above the door." * 2
    path = write_jsonl(tmp_path / "threads.jsonl", rows)
    config = tmp_path / "c.yaml"
    config.write_text(f"output_dir: {tmp_path / 'out'}\ndata: {{path: {path}, num_proc: 1, sequence_len: 400,"
                      f" min_turns: 3}}\nmodel: {{tokenizer: {TOKENIZER}}}\n")
    return config, load_config(config, list(overrides))


def long_history_config(tmp_path, *overrides):
    card = tmp_path / "card.yaml"
    card.write_text("name: Nox\nsource: The Ferryman's Lantern\ntraits: [curt]\n")
    lines = [f"{('Mara', 'Ivo')[i % 2]}: Line {i} of a conversation that keeps going and going on." for i in range(14)]
    (tmp_path / "script.txt").write_text("\n".join([*lines, "Nox: Enough.", "Mara: Fine.", "Nox: Good."]) + "\n")
    config = tmp_path / "c.yaml"
    config.write_text(f"output_dir: {tmp_path / 'out'}\nmodel: {{tokenizer: {TOKENIZER}}}\n"
                      f"data: {{path: {tmp_path / 'script.txt'}, template: alichat, character: Nox, card: {card},"
                      f" num_proc: 1, sequence_len: 300, history_turns: 12, scenario: {{text: A dock.}}}}\n")
    return config, load_config(config, list(overrides))


@pytest.mark.parametrize("make", [long_threads_config, long_history_config], ids=["windows", "trimmed_history"])
def test_preview_with_a_tokenizer_shows_exactly_what_prepare_writes(tmp_path, tokenizer, make, capsys):
    config, cfg = make(tmp_path)
    previewed = list(preview_examples(cfg, None, tokenizer))
    prepare(cfg, tokenizer)
    dataset, _ = load_prepared(tmp_path / "out")
    assert [example_id for example_id, _ in previewed] == dataset["id"]
    for (_, example), row in zip(previewed, dataset):
        tokens = encode_batch([example], tokenizer)[0]
        assert tokens.input_ids.tolist() == row["input_ids"] and tokens.labels.tolist() == row["labels"]
    # the case under test happened: windows of the long thread, and histories trimmed to fit
    untrimmed = list(preview_examples(cfg, None, None))
    assert len(untrimmed) < len(previewed) if make is long_threads_config else (
        [e.text for _, e in untrimmed] != [e.text for _, e in previewed])
    # and the command line shows the same examples, with their ids
    assert main(["preview", str(config), "--json", "--n", "0", "--tokenizer", str(TOKENIZER)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["text"], [tuple(s) for s in r["trained"]]) for r in rows] == [
        (example_id, e.text, list(e.trained)) for example_id, e in previewed]


def test_preview_headers_name_the_thread_or_window(tmp_path, capsys):
    config, _ = long_threads_config(tmp_path)
    assert main(["preview", str(config), "--n", "0", "--tokenizer", str(TOKENIZER)]) == 0
    headers = [line for line in capsys.readouterr().out.splitlines() if line.startswith("=====")]
    assert headers[0].startswith("===== example 1: t0 (") and any(": long#w1 (" in h for h in headers)


def test_parallel_building_gives_the_same_dataset_as_one_process(tmp_path, tokenizer):
    rows = [make_thread(f"t{i}", ("Ann", "Bo", "Cy", "Bo") * (2 + i % 9)) for i in range(3 * prepare_module._BATCH)]
    rows[7]["posts"][2]["text"] = 42  # malformed, counted under skip
    path = write_jsonl(tmp_path / "threads.jsonl", rows)
    assert len(rows) > 2 * prepare_module._BATCH  # more than one task each for two workers
    results = []
    for processes in (1, 2):
        cfg = load_config(None, [f"output_dir={tmp_path / str(processes)}", f"data.path={path}",
                                 f"data.num_proc={processes}", f"model.tokenizer={TOKENIZER}", "data.on_error=skip",
                                 "data.sequence_len=256", "data.min_turns=3"])
        manifest = prepare(cfg, tokenizer).manifest
        dataset, _ = load_prepared(cfg.output_dir)
        manifest.pop("seconds")
        results.append((dataset.to_dict(), manifest))
    assert any("#w" in i for i in results[0][0]["id"]) and results[0][1]["dropped"]["malformed"] == 1
    assert results[0] == results[1]


def test_dropped_windows_are_counted_under_the_filter_they_failed(tmp_path, tokenizer):
    _, probe = long_threads_config(tmp_path, "data.min_turns=1", "data.window_context=false")
    turns = [e.text.count("[INST]") - 1 for i, e in preview_examples(probe, None, tokenizer) if i.startswith("long#")]
    shorter = sum(1 for n in turns if n < max(turns))
    assert len(turns) >= 3 and 0 < shorter < len(turns)
    _, cfg = long_threads_config(tmp_path, f"data.min_turns={max(turns)}", "data.window_context=false")
    manifest = prepare(cfg, tokenizer).manifest
    assert manifest["windows_dropped"] == {"too_few_turns": shorter, "too_few_characters": 0,
                                           "too_many_characters": 0, "too_long": 0}

    thread = make_thread("huge", ("Ann", "Bo", "Cy", "Bo") * 6)
    thread["posts"][9]["text"] = "A post far longer than any window can hold. " * 80
    _, cfg = long_threads_config(tmp_path, f"data.path={write_jsonl(tmp_path / 'huge.jsonl', [thread])}",
                                 "data.min_turns=1")
    manifest = prepare(cfg, tokenizer).manifest
    # the one post that fits no window is the only one too_long; the entry keeps its other windows
    assert manifest["windows_dropped"]["too_long"] == 1 and manifest["entries_kept"] == 1


def test_stats_writes_nothing_and_reads_a_current_prepare(tmp_path, tokenizer, capsys):
    config, cfg = long_threads_config(tmp_path)
    assert main(["stats", str(config)]) == 0
    before = capsys.readouterr().out
    assert "5 in, 5 kept" in before and not (tmp_path / "out").exists()
    prepare(cfg, tokenizer)
    manifest = tmp_path / "out" / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    assert main(["stats", str(config), "data.min_turns=40"]) == 0  # another config: computed, not written
    assert "0 kept" in capsys.readouterr().out and manifest.stat().st_mtime_ns == stamp
    assert main(["stats", str(config)]) == 0
    assert capsys.readouterr().out == before and manifest.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("command", [["config-help"], ["preview", "configs/demo.yaml", "--n", "0"]])
def test_a_pipe_closed_early_ends_quietly(command):
    process = subprocess.Popen([sys.executable, "-m", "grouprp", *command], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    process.stdout.close()  # like `| head` once it has read enough: every write now fails with EPIPE
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_progress_logs_plain_lines_outside_a_terminal(caplog, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    caplog.set_level("INFO", logger="grouprp")
    progress = Progress("building examples", unit="threads", total=4, every=0)
    progress.update(1)
    progress.update(3)
    progress.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("building examples: 1/4 threads (") and "threads/s, about" in lines[0]
    assert lines[-1].startswith("building examples: 4/4 threads (") and "left" not in lines[-1]
    assert len(lines) == 2  # the closing line is not repeated when the last update already said it


def test_progress_draws_a_bar_with_rate_and_eta_in_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    progress = Progress("building examples", unit="threads", total=50)
    for _ in range(50):
        progress.update(1)
    progress.close()
    bar = capsys.readouterr().err
    assert "building examples: 100%" in bar and "50/50" in bar and "threads/s]" in bar


def test_prepare_reports_its_progress(tmp_path, tokenizer, caplog):
    caplog.set_level("INFO", logger="grouprp")
    _, cfg = long_threads_config(tmp_path)
    prepare(cfg, tokenizer)
    assert any(r.getMessage().startswith("building examples: 5/5 threads (") for r in caplog.records)


def test_a_killed_prepare_leaves_no_worker_running(tmp_path):
    rows = [make_thread(f"t{i}", ("Ann", "Bo", "Cy", "Bo") * 3) for i in range(3 * prepare_module._BATCH)]
    data = write_jsonl(tmp_path / "threads.jsonl", rows)
    # every task takes a minute, so only the kernel's parent-death signal can end the workers within seconds
    script = (f"import time\nfrom grouprp.modes.group import GroupMode\nbuild = GroupMode.build\n"
              f"GroupMode.build = lambda self, *a: (time.sleep(60), build(self, *a))[1]\n"
              f"from grouprp.config import load_config\nfrom grouprp.prepare import prepare\n"
              f"prepare(load_config(None, ['output_dir={tmp_path / 'out'}', 'data.path={data}', 'data.num_proc=2', "
              f"'model.tokenizer={TOKENIZER}']))\n")
    parent = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "HF_HUB_OFFLINE": "1"},
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    workers = []
    while len(workers) < 2 and time.time() < deadline and parent.poll() is None:
        time.sleep(0.2)
        workers = children_of(parent.pid)
    assert len(workers) == 2, "the workers never started"
    time.sleep(1)  # inside their first task now
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while any(alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers)


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
