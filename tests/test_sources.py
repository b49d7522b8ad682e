"""Input readers and bad input: under `on_error: raise` one clear line naming the place; under `skip`, counted."""

import csv
import json

import pytest

from conftest import ROOT, make_thread, write_jsonl
from grouprp.cli import main
from grouprp.config import load_config
from grouprp.filters import Accounting
from grouprp.prepare import checked
from grouprp.schema import Malformed, Thread
from grouprp.sources import read_threads


def config(tmp_path, path, *overrides):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"output_dir: {tmp_path / 'out'}\ndata: {{path: {path}}}\n")
    return load_config(cfg_file, list(overrides))


def threads_of(cfg):
    return [r for r in read_threads(cfg.data)]


GOOD = make_thread("good")


def bad_json_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + '{"id": "broken", "posts": [\n')
    return path, f"{path}:2: not valid JSON"


def thread_without_posts(tmp_path):
    return write_jsonl(tmp_path / "t.jsonl", [GOOD, {"id": "x"}]), "t.jsonl:2: missing `posts`"


def wrong_types(tmp_path):
    bad = make_thread("x")
    bad["posts"][1]["text"] = 42
    return write_jsonl(tmp_path / "t.jsonl", [GOOD, bad]), "t.jsonl:2: posts[1].text: expected a string, got a number (42)"


def empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    return path, "empty.jsonl: empty file: no threads in it"


def non_utf8(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"id": "x", "posts": [{"text": "caf\xe9"}]}\n')
    return path, "t.jsonl:2: not UTF-8 text (byte 0xe9 at column 36)"


def huge_post(tmp_path):
    bad = make_thread("x")
    bad["posts"][2]["text"] = "word " * 210_000
    return write_jsonl(tmp_path / "t.jsonl", [GOOD, bad]), \
        "t.jsonl:2: posts[2].text: 1,050,000 characters, over data.max_post_chars (100,000)"


def csv_without_thread_id(tmp_path):
    path = tmp_path / "posts.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["position", "author", "text"])
        writer.writerow([1, "amy", "hello"])
    return path, "posts.csv:1: no 'thread_id' column (data.columns.thread_id); the header has 'position', 'author', 'text'"


BAD_INPUTS = [bad_json_line, thread_without_posts, wrong_types, empty_file, non_utf8, huge_post, csv_without_thread_id]


@pytest.mark.parametrize("make", BAD_INPUTS, ids=lambda f: f.__name__)
def test_raise_gives_one_clear_line_naming_the_place(tmp_path, make, capsys):
    path, message = make(tmp_path)
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"data: {{path: {path}}}\n")
    assert main(["preview", str(cfg_file), "--n", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if line.startswith("error:")]) == 1
    error = next(line for line in err if line.startswith("error:"))
    assert message in error
    assert "data.on_error=skip" in error
    assert "Traceback" not in "\n".join(err)


@pytest.mark.parametrize("make", BAD_INPUTS, ids=lambda f: f.__name__)
def test_skip_counts_the_bad_record_and_uses_the_rest(tmp_path, make):
    path, _ = make(tmp_path)
    cfg = config(tmp_path, path, "data.on_error=skip")
    accounting = Accounting()
    good = list(checked(read_threads(cfg.data), cfg.data, accounting))
    assert accounting.dropped["malformed"] == 1
    assert [t.id for t in good] == ([] if make in (empty_file, csv_without_thread_id) else ["good"])
    assert accounting.entries_in == len(good) + 1


def test_threads_json_list_and_optional_fields(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps([{"id": 7, "posts": [{"author": "amy", "text": "hi"}]}, GOOD]))
    records = threads_of(config(tmp_path, path))
    assert [r.id for r in records] == ["7", "good"]
    assert records[0].posts[0].character is None and records[0].characters == ()


def test_a_folder_reads_every_data_file_sorted_and_skips_the_sheets_file(tmp_path):
    write_jsonl(tmp_path / "d" / "b.jsonl", [make_thread("b")])
    write_jsonl(tmp_path / "d" / "a" / "a.jsonl", [make_thread("a")])
    write_jsonl(tmp_path / "d" / "sheets.jsonl", [{"name": "Ann", "sheet": "Age: 3"}])
    (tmp_path / "d" / "notes.txt").write_text("not data")
    cfg = config(tmp_path, tmp_path / "d", f"data.sheets={tmp_path / 'd' / 'sheets.jsonl'}", "data.format=threads")
    assert [t.id for t in threads_of(cfg)] == ["a", "b"]


def write_posts_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_posts_table_with_remapped_columns_unsorted_rows_and_sheets(tmp_path):
    rows = [
        ["t/2", "2", "bob", "", "second of two"],
        ["t/1", "10", "amy", "Lira", "tenth"],
        ["t/1", "9", "bob", "", "ninth"],
        ["t/2", "1", "amy", "Lira", "first of two"],
        ["t/1", "1", "amy", "Lira", "first"],
    ]
    path = write_posts_csv(tmp_path / "posts.csv", ["thread_href", "message_number", "user_name", "char", "message"], rows)
    write_jsonl(tmp_path / "sheets.jsonl", [
        {"name": "Brom", "player": "bob", "sheet": "Age: 40"},                      # every thread bob posts in
        {"thread_id": "t/2", "name": "Lira", "player": "amy", "sheet": {"Age": 20}},  # only thread t/2
    ])
    cfg = config(tmp_path, path, f"data.sheets={tmp_path / 'sheets.jsonl'}",
                 "data.columns={thread_id: thread_href, position: message_number, author: user_name, "
                 "character: char, text: message}")
    threads = {t.id: t for t in threads_of(cfg)}
    assert [p.text for p in threads["t/1"].posts] == ["first", "ninth", "tenth"]  # numeric, not string, order
    assert [p.text for p in threads["t/2"].posts] == ["first of two", "second of two"]
    assert [c.name for c in threads["t/1"].characters] == ["Brom"]
    assert [c.name for c in threads["t/2"].characters] == ["Lira", "Brom"]


def test_posts_table_without_position_keeps_file_order_and_reads_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"thread_id": [1, 1, 2, 1], "text": ["a", "b", "c", None], "author": ["x", "y", "x", "x"]})
    pq.write_table(table, tmp_path / "posts.parquet")
    threads = threads_of(config(tmp_path, tmp_path / "posts.parquet"))
    assert [(t.id, [p.text for p in t.posts]) for t in threads] == [("2", ["c"]), ("1", ["a", "b", ""])]


def test_posts_as_jsonl_rows_are_told_apart_from_threads(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", [{"thread_id": "q", "author": "amy", "text": "hi"},
                                                 {"thread_id": "q", "author": "bob", "text": "yo"}])
    threads = threads_of(config(tmp_path, path))
    assert isinstance(threads[0], Thread) and [p.text for p in threads[0].posts] == ["hi", "yo"]


def test_a_thread_with_one_bad_row_is_malformed_as_a_whole(tmp_path):
    path = tmp_path / "posts.csv"
    path.write_bytes(b"thread_id,author,text\nA,amy,fine\nA,bob,caf\xe9\nB,amy,ok\n")
    records = threads_of(config(tmp_path, path))
    assert isinstance(records[0], Malformed) and records[0].where.endswith("posts.csv:3")
    assert isinstance(records[1], Thread) and records[1].id == "B"


def test_streaming_keeps_memory_bounded(tmp_path):
    """200,000 posts in a posts table are grouped into threads without holding the file in memory."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from read_memory import measure

    result = measure(200_000, 40, tmp_path)
    assert result["posts"] == 200_000 and result["file_mb"] > 50
    assert result["peak_mb"] < 200, result
