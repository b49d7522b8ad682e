"""data.quality in the pipeline: each mode's effect on the examples and the accounting, repeated threads, the
genre cap, and the `grouprp inspect` report (its HTML parsed, and opened in a real headless Chromium)."""

import json
import random
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from conftest import TOKENIZER, write_jsonl
from grouprp.config import load_config
from grouprp.prepare import load_prepared, prepare, preview_examples
from grouprp.report import collect, render_html

CAST = [{"name": "Ilsa"}, {"name": "Corvin"}, {"name": "Pell"}]
TAIL = "Ilsa shrugged and sat down by the fire."
ASIDE = "[OOC: sorry, busy week]"


def thread(thread_id, edit=""):
    posts = [("Ilsa", "Ilsa pushed the door open and stepped into the rain-dark hall, shaking water from her hood."),
             ("Corvin", f'Corvin looked up from the ledger. "You\'re late{edit}." {TAIL}'),
             ("Pell", f"Pell poured three cups of tea. {ASIDE} The kettle hissed on the hob."),
             ("Ilsa", '"Late is better than never," Ilsa said, warming her hands at the grate.'),
             ("Corvin", "brb"),
             ("Pell", "Pell laughed at both of them and went out to fetch more wood for the night."),
             ("Corvin", "Corvin closed the ledger with a snap and stood to bar the door against the storm."),
             ("Pell", "Pell hummed an old harbour song while she stacked the wood by the hearth."),
             ("Ilsa", "Ilsa pulled off her boots and set them by the fire to dry."),
             ("Corvin", "Corvin snuffed the last candle but one and left it burning in the window."),
             ("Ilsa", "Ilsa watched the shutters rattle.")]
    return {"id": thread_id, "user": "Ilsa", "characters": CAST,
            "posts": [{"character": c, "text": t} for c, t in posts]}


def config(tmp_path, data, *overrides):
    path = tmp_path / "c.yaml"
    path.write_text(f"output_dir: {tmp_path / 'out'}\ndata: {{path: {data}, num_proc: 1}}\n"
                    f"model: {{tokenizer: {TOKENIZER}}}\n")
    return load_config(path, list(overrides))


@pytest.fixture
def threads(tmp_path):
    return write_jsonl(tmp_path / "threads.jsonl", [thread("inn"), thread("inn-repost", edit=", as usual")])


def texts(cfg, tokenizer):
    return {example_id: example.text for example_id, example in preview_examples(cfg, None, tokenizer)}


def balanced(m):
    return m["entries_in"] == m["entries_kept"] + sum(m["dropped"].values())


def test_flag_counts_what_each_detector_finds_and_changes_no_example(tmp_path, threads, tokenizer):
    off = ["data.quality.impersonation=off", "data.quality.ooc=off", "data.quality.duplicates=off",
           "data.quality.low_effort=off"]
    plain = prepare(config(tmp_path, threads, *off), tokenizer).manifest
    flagged = prepare(config(tmp_path, threads), tokenizer).manifest  # flag is the default
    assert plain["fingerprint"] != flagged["fingerprint"]
    assert flagged["tokens"] == plain["tokens"] and flagged["posts_removed"] == plain["posts_removed"]
    q = flagged["quality"]
    assert q["impersonation"]["posts_found"] == 2 and q["impersonation"]["kinds"] == {"tail": 2}
    assert q["ooc"]["posts_found"] == 4 and q["ooc"]["kinds"] == {"bracketed": 2, "chat": 2}
    assert q["duplicates"]["threads_found"] == 1 and q["duplicates"]["copies"][0]["of"] == "inn"
    assert all(plain["quality"][d]["posts_found"] == 0 for d in ("impersonation", "ooc", "low_effort"))
    assert balanced(flagged) and flagged["entries_kept"] == 2


def test_trim_cuts_the_tail_and_the_aside_and_counts_them(tmp_path, threads, tokenizer):
    cfg = config(tmp_path, threads, "data.quality.impersonation=trim", "data.quality.ooc=trim")
    m = prepare(cfg, tokenizer).manifest
    text = texts(cfg, tokenizer)["inn"]
    assert TAIL not in text and 'Corvin: Corvin looked up from the ledger. "You\'re late."[/INST]' in text
    assert ASIDE not in text and "Pell poured three cups of tea. The kettle hissed on the hob." in text
    assert "brb" not in text  # a post of only OOC text goes
    assert m["posts_changed"]["impersonation"] == 2 and m["posts_changed"]["ooc"] == 2
    assert m["posts_removed"]["ooc"] == 2 and m["quality"]["impersonation"]["posts_trimmed"] == 2
    assert balanced(m)


def test_drop_removes_the_posts_and_the_repeated_thread(tmp_path, threads, tokenizer):
    cfg = config(tmp_path, threads, "data.quality.impersonation=drop", "data.quality.ooc=drop",
                 "data.quality.duplicates=drop")
    m = prepare(cfg, tokenizer).manifest
    assert m["dropped"]["duplicates"] == 1 and m["entries_kept"] == 1 and balanced(m)
    dataset, _ = load_prepared(tmp_path / "out")
    assert dataset["id"] == ["inn"]
    shown = texts(cfg, tokenizer)  # preview builds what prepare writes: the repost left out there too
    assert list(shown) == ["inn"]
    text = shown["inn"]
    assert "Corvin looked up from the ledger" not in text and "Pell poured three cups" not in text
    assert m["posts_removed"]["impersonation"] == 2 and m["posts_removed"]["ooc"] == 4
    assert m["quality"]["duplicates"]["threads_dropped"] == 1


def test_a_post_dropped_as_low_effort_or_a_double_post_is_counted(tmp_path, tokenizer):
    row = thread("inn")
    row["posts"][5]["text"] = "and then we ran " * 12
    row["posts"].insert(7, dict(row["posts"][6]))  # Corvin's last post, submitted twice
    data = write_jsonl(tmp_path / "t.jsonl", [row])
    m = prepare(config(tmp_path, data, "data.quality.low_effort=drop", "data.quality.duplicates=drop"),
                tokenizer).manifest
    assert m["posts_removed"]["low_effort"] == 1 and m["quality"]["low_effort"]["kinds"] == {"repetition": 1}
    assert m["posts_removed"]["duplicates"] == 1 and m["quality"]["duplicates"]["kinds"] == {"double_post": 1}
    assert balanced(m)


GENRE_WORDS = {"fantasy": "the mage lifted her staff while the dragon circled the castle and the knight drew a sword",
               "science fiction": "the starship left orbit as the android checked the reactor and the airlock hissed"}


def genre_thread(thread_id, genre, rng):
    names = ["Ilsa", "Corvin", "Pell"]
    posts = [{"character": names[i % 3], "text": f"{GENRE_WORDS[genre]} {rng.random()} {rng.random()}."}
             for i in range(7)]
    return {"id": thread_id, "user": "Ilsa", "characters": [{"name": n} for n in names], "posts": posts}


def test_the_genre_cap_leaves_out_whole_threads_seeded_and_counted(tmp_path, tokenizer):
    rng = random.Random(0)
    rows = [genre_thread(f"fantasy-{i}", "fantasy", rng) for i in range(6)]
    rows += [genre_thread(f"scifi-{i}", "science fiction", rng) for i in range(2)]
    data = write_jsonl(tmp_path / "t.jsonl", rows)
    m = prepare(config(tmp_path, data, "data.quality.max_genre_share=0.5"), tokenizer).manifest
    genres = m["quality"]["genres"]
    assert genres["shares_before_cap"] == {"fantasy": 0.75, "science fiction": 0.25}
    assert genres["shares"] == {"fantasy": 0.5, "science fiction": 0.5} and genres["left_out"] == {"fantasy": 4}
    assert m["dropped"]["max_genre_share"] == 4 and m["entries_kept"] == 4 and balanced(m)
    dataset, _ = load_prepared(tmp_path / "out")
    kept = sorted(dataset["id"])
    assert len(kept) == 4 == m["examples"] and {"scifi-0", "scifi-1"} <= set(kept)
    capped = config(tmp_path, data, "data.quality.max_genre_share=0.5")
    assert sorted(texts(capped, tokenizer)) == kept  # preview leaves out the same threads
    again = prepare(config(tmp_path, data, "data.quality.max_genre_share=0.5", "data.quality.seed=1"),
                    tokenizer, force=True).manifest
    assert again["dropped"]["max_genre_share"] == 4
    assert sorted(load_prepared(tmp_path / "out")[0]["id"]) != kept  # another seed, other threads


class Segments(HTMLParser):
    """Each example of the report: its text as shown (taken-out text aside), the trained positions, the flagged
    positions by reason, and the text taken out by reason."""

    def __init__(self):
        super().__init__()
        self.examples, self.current, self.stack = {}, None, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "details" and "example" in (attrs.get("class") or ""):
            self.current = {"text": "", "trained": [], "flagged": [], "taken": []}
            self.examples[attrs["data-id"]] = self.current
        if self.current is not None and tag in ("span", "del"):
            self.stack.append((tag, attrs))

    def handle_endtag(self, tag):
        if tag == "details":
            self.current = None
        elif tag in ("span", "del") and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if self.current is None:
            return
        tag, attrs = self.stack[-1] if self.stack else ("", {})
        if tag == "del":
            self.current["taken"].append((attrs["data-reason"], data))
            return
        if not self.stack and not data.strip() and not self.current["text"]:
            return
        start = len(self.current["text"])
        self.current["text"] += data
        classes = (attrs.get("class") or "").split()
        if "t" in classes:
            self.current["trained"].append((start, start + len(data)))
        if "f" in classes:
            self.current["flagged"].append((attrs["data-reasons"], data))


def merged(spans):
    out = []
    for start, end in sorted(spans):
        if out and start == out[-1][1]:
            out[-1] = (out[-1][0], end)
        elif end > start:
            out.append((start, end))
    return out


def report_examples(html_text):
    parser = Segments()
    parser.feed(html_text)
    return parser.examples


def test_the_report_highlights_exactly_the_trained_spans_and_marks_what_was_taken_out(tmp_path, threads, tokenizer):
    cfg = config(tmp_path, threads, "data.quality.impersonation=trim")  # ooc flagged, the repost flagged
    data = collect(cfg, tokenizer, examples=10)
    page = render_html(data)
    assert "<link" not in page and "src=" not in page and "@import" not in page and "url(" not in page
    shown = report_examples(page)
    truth = dict(preview_examples(cfg, None, tokenizer))
    assert set(shown) == set(truth) == {"inn", "inn-repost"}
    for example_id, example in truth.items():
        got = shown[example_id]
        summary_prefix = got["text"].index("[INST]")  # the <summary> line comes first
        text = got["text"][summary_prefix:]
        assert text == example.text
        trained = [(s - summary_prefix, e - summary_prefix) for s, e in got["trained"]]
        assert merged(trained) == merged(example.trained)
        assert ("impersonation", TAIL) in [(r, t.strip()) for r, t in got["taken"]]
        assert ("ooc", ASIDE) in got["flagged"] and ("ooc", "brb") in got["flagged"]
        assert ("trailing_user", "Ilsa: Ilsa watched the shutters rattle.") in got["taken"]
    as_json = json.loads(json.dumps(data))
    assert {e["id"] for e in as_json["examples"]} == {"inn", "inn-repost"}
    assert as_json["manifest"]["quality"]["duplicates"]["threads_found"] == 1


def test_inspect_writes_the_html_and_the_json(tmp_path, threads):
    from grouprp.cli import main

    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"output_dir: {tmp_path / 'out'}\ndata: {{path: {threads}, num_proc: 1}}\n"
                        f"model: {{tokenizer: {TOKENIZER}}}\n")
    assert main(["inspect", str(cfg_path), "--out", str(tmp_path / "r.html")]) == 0
    assert main(["inspect", str(cfg_path), "--json", "--out", str(tmp_path / "r.json")]) == 0
    page = (tmp_path / "r.html").read_text()
    data = json.loads((tmp_path / "r.json").read_text())
    assert set(report_examples(page)) == {e["id"] for e in data["examples"]}
    assert data["manifest"]["entries_in"] == 2 and "<svg" in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (Debian: apt-get install chromium; "
                                             "scripts/test.sh installs it where it can)")
def test_the_report_renders_in_a_real_headless_chromium_without_script_errors(tmp_path, threads, tokenizer):
    page = render_html(collect(config(tmp_path, threads), tokenizer))

    def dom(html_text):
        path = tmp_path / "report.html"
        path.write_text(html_text, encoding="utf-8")
        done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                               path.as_uri()], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    rendered = dom(page)
    assert 'data-ready="1"' in rendered and 'data-errors="1"' not in rendered
    assert rendered.count('class="example"') == 2
    broken = page.replace("</body>", "<script>no_such_function();</script></body>")  # the check can fail
    assert 'data-errors="1"' in dom(broken)
