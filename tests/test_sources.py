"""Input readers and bad input: under `on_error: raise` one clear line naming the place; under `skip`, counted."""

import csv
import json
from collections import Counter

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


def posts_csv(tmp_path, *lines):
    path = tmp_path / "posts.csv"
    path.write_text("thread_id,author,text\n" + "".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def bad_csv_row(tmp_path, row):
    """A posts table whose middle row is broken, between two good ones of thread `good`."""
    return posts_csv(tmp_path, "good,amy,fine", row, "good,bob,also fine")


def csv_unquoted_comma(tmp_path):
    return bad_csv_row(tmp_path, "x,amy,Well, then."), \
        "posts.csv:3: 4 cells where the header has 3; a comma inside a cell's text needs quoting"


def csv_missing_cell(tmp_path):
    return bad_csv_row(tmp_path, "x,amy"), "posts.csv:3: 2 cells where the header has 3"


def csv_stray_quote(tmp_path):
    return bad_csv_row(tmp_path, 'x,amy,"Halt" he said'), "posts.csv:3: broken quoting"


def csv_unclosed_quote(tmp_path):
    return bad_csv_row(tmp_path, 'x,amy,"Halt'), "posts.csv:3: broken quoting"


def csv_cell_too_long(tmp_path):
    return bad_csv_row(tmp_path, f'x,amy,"{"word " * 30_000}"'), \
        "posts.csv:3: a cell over data.max_post_chars (100,000 characters)"


BAD_CSV_ROWS = [csv_unquoted_comma, csv_missing_cell, csv_stray_quote, csv_unclosed_quote, csv_cell_too_long]


def posts_jsonl_row_without_text(tmp_path):
    return write_jsonl(tmp_path / "rows.jsonl", [{"thread_id": "good", "author": "amy", "text": "hi"},
                                                 {"thread_id": "x", "author": "amy", "message": "hi"}]), \
        "rows.jsonl:2: no 'text' in this row (data.columns.text)"


def huge_integer(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + '{"id": "x", "posts": [], "n": ' + "9" * 5000 + "}\n")
    return path, "t.jsonl:2: not readable JSON (Exceeds the limit"


def deep_nesting(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    return path, "t.jsonl:2: not readable JSON (nested too deeply)"


def broken_surrogate_id(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + '{"id": "\\udc00", "posts": []}\n')
    return path, "t.jsonl:2: id: '\\udc00' is not a usable id"


def duplicate_thread_id(tmp_path):
    write_jsonl(tmp_path / "d" / "a.jsonl", [GOOD])
    write_jsonl(tmp_path / "d" / "b.jsonl", [make_thread("good", ("Bo", "Cy"))])
    return tmp_path / "d", "b.jsonl:1: thread id 'good' again (first at"


def corrupt_parquet(tmp_path):
    write_jsonl(tmp_path / "d" / "a.jsonl", [GOOD])
    (tmp_path / "d" / "b.parquet").write_bytes(b"PAR1 this is not a parquet file")
    return tmp_path / "d", "b.parquet: not a readable Parquet file"


BAD_INPUTS = [bad_json_line, thread_without_posts, wrong_types, empty_file, non_utf8, huge_post,
              csv_without_thread_id, *BAD_CSV_ROWS, posts_jsonl_row_without_text, huge_integer, deep_nesting,
              broken_surrogate_id, duplicate_thread_id, corrupt_parquet]


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
    if make in BAD_CSV_ROWS:
        # the rows after the bad one are read as rows: nothing is swallowed
        assert [p.text for p in good[0].posts] == ["fine", "also fine"]


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


def test_tsv_quotes_are_text_unless_the_table_says_they_are_quoting(tmp_path):
    path = tmp_path / "posts.tsv"
    path.write_text('thread_id\tauthor\ttext\nq\tamy\t"Halt," she said.\nq\tbob\tHe "halted".\n', encoding="utf-8")
    assert [p.text for p in threads_of(config(tmp_path, path))[0].posts] == ['"Halt," she said.', 'He "halted".']
    path.write_text('thread_id\tauthor\ttext\nq\tamy\t"Halt,\tshe said."\n', encoding="utf-8")
    assert [p.text for p in threads_of(config(tmp_path, path, "data.tsv_quoted=true"))[0].posts] == ["Halt,\tshe said."]


def test_byte_order_marks_are_not_text(tmp_path):
    bom = "\ufeff"
    table = tmp_path / "posts.csv"
    table.write_text(bom + "position,thread_id,author,text\n2,q,bob,second\n1,q,amy,first\n", encoding="utf-8")
    assert [p.text for p in threads_of(config(tmp_path, table))[0].posts] == ["first", "second"]
    lines = tmp_path / "t.jsonl"
    lines.write_text(bom + json.dumps(GOOD) + "\n", encoding="utf-8")
    assert [t.id for t in threads_of(config(tmp_path, lines))] == ["good"]
    whole = tmp_path / "t.json"
    whole.write_text(bom + json.dumps([GOOD]), encoding="utf-8")
    assert [t.id for t in threads_of(config(tmp_path, whole))] == ["good"]


def test_a_posts_jsonl_with_a_broken_first_line_is_still_read_as_posts(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"thread_id": "q", "author": \n' + "".join(
        json.dumps({"thread_id": "q", "author": a, "text": t}) + "\n" for a, t in (("amy", "hi"), ("bob", "yo"))))
    records = threads_of(config(tmp_path, path, "data.on_error=skip"))
    assert isinstance(records[0], Malformed) and records[0].where.endswith("rows.jsonl:1")
    assert [p.text for p in records[1].posts] == ["hi", "yo"]


def test_one_thread_spread_over_two_table_files_is_one_thread(tmp_path):
    (tmp_path / "d").mkdir()
    write_posts_csv(tmp_path / "d" / "a.csv", ["thread_id", "position", "author", "text"],
                    [["q", 3, "amy", "third"], ["q", 1, "amy", "first"], ["r", 1, "cy", "alone"]])
    write_posts_csv(tmp_path / "d" / "b.csv", ["thread_id", "position", "author", "text"], [["q", 2, "bob", "second"]])
    threads = {t.id: t for t in threads_of(config(tmp_path, tmp_path / "d"))}
    assert [p.text for p in threads["q"].posts] == ["first", "second", "third"] and len(threads) == 2


def test_positions_of_any_size_sort_as_numbers(tmp_path):
    rows = [["q", "9" * 5000, "amy", "last"], ["q", "1e400", "bob", "infinite"], ["q", "12", "cy", "twelve"],
            ["q", "3", "amy", "three"]]
    path = write_posts_csv(tmp_path / "posts.csv", ["thread_id", "position", "author", "text"], rows)
    assert [p.text for p in threads_of(config(tmp_path, path))[0].posts] == ["three", "twelve", "last", "infinite"]


def test_sheet_rows_no_thread_uses_are_counted_and_named(tmp_path, caplog):
    path = write_posts_csv(tmp_path / "posts.csv", ["thread_id", "author", "character", "text"],
                           [["t1", "amy", "Lira", "hi"], ["t1", "bob", "Brom", "yo"]])
    write_jsonl(tmp_path / "sheets.jsonl", [
        {"thread_id": "t1", "name": "Lira", "sheet": "Age: 20"},       # used
        {"name": "Brom", "sheet": "Age: 40"},                           # used: Brom posts in t1
        {"thread_id": "t9", "name": "Lira", "sheet": "Age: 21"},       # no thread t9
        {"thread_id": "t1", "name": "Quill", "sheet": "Age: 30"},      # Quill never posts in t1
        {"name": "Nobody", "sheet": "Age: 1"},                          # posts nowhere
    ])
    left_out = Counter()
    cfg = config(tmp_path, path, f"data.sheets={tmp_path / 'sheets.jsonl'}")
    list(read_threads(cfg.data, left_out))
    assert left_out == {"sheet_rows_unused": 3}
    assert "sheets.jsonl:3" in caplog.text and "sheets.jsonl:4" in caplog.text and "sheets.jsonl:5" in caplog.text
