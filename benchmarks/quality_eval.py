"""Precision and recall of the data-quality detectors on the project's labelled posts.

    python benchmarks/quality_eval.py [--split dev|test|all] [--data data/quality/labelled_posts.jsonl] [--errors]

data/quality/labelled_posts.jsonl holds original forum-roleplay posts written for this purpose, each labelled by
hand with its impersonating tail (the exact end of a model post that narrates or speaks for the user's
character), whether it impersonates elsewhere, its OOC passages (exact substrings) and whether it is only OOC.
Threads are split: `dev` (parts A and B, by two writers) is what the detectors were tuned on; `test` (parts C and
D, by two other writers) was held out and only measured.

Impersonation (model posts only):
  tail, per post:  a post whose label has a tail is found when the detector finds a tail in it.
                   Targets: precision >= 0.9, recall >= 0.8.
  tail, exact cut: of the posts found, the share whose detected tail starts where the labelled one does.
  tail, trimmed characters: precision and recall of the characters `trim` would cut.
OOC (all posts):
  spans:           a detected span is right when it overlaps a labelled OOC passage (precision; target >= 0.95);
                   a labelled passage is found when a detected span overlaps it (recall).
  posts:           a post has OOC text; ooc_only: the detector leaves no in-character text.
Results go in docs/benchmarks.md with this command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grouprp.quality.impersonation import find_impersonation  # noqa: E402
from grouprp.quality.ooc import ooc_only, ooc_spans  # noqa: E402


def ratio(a: int, b: int) -> float:
    return a / b if b else float("nan")


def labelled_spans(row: dict) -> list[tuple[int, int]]:
    spans, text = [], row["text"]
    for passage in row["ooc"]:
        start = text.find(passage)
        while start >= 0 and any(s == start for s, _ in spans):
            start = text.find(passage, start + 1)
        if start < 0:
            raise ValueError(f"{row['id']}: OOC passage {passage[:40]!r} is not in the text")
        spans.append((start, start + len(passage)))
    return spans


def evaluate(rows: list[dict], show_errors: bool = False) -> dict:
    tail = {"tp": 0, "fp": 0, "fn": 0, "exact": 0, "cut_right": 0, "cut": 0, "labelled_chars": 0}
    ooc = {"tp_spans": 0, "spans": 0, "found": 0, "labelled": 0, "post_tp": 0, "post_fp": 0, "post_fn": 0,
           "only_tp": 0, "only_fp": 0, "only_fn": 0}
    for row in rows:
        text = row["text"]
        if row["role"] == "model":
            found = find_impersonation(text, row["user"], row["characters"])
            label = row["impersonation_tail"]
            start = len(text) - len(label) if label else None
            if found.tail is not None and start is not None:
                tail["tp"] += 1
                tail["exact"] += text[found.tail:].strip() == label.strip()
            elif found.tail is not None:
                tail["fp"] += 1
            elif start is not None:
                tail["fn"] += 1
            cut = len(text) - found.tail if found.tail is not None else 0
            tail["cut"] += cut
            tail["labelled_chars"] += len(label) if label else 0
            tail["cut_right"] += min(cut, len(label)) if label else 0
            if show_errors and (found.tail is not None) != (start is not None) or (
                    show_errors and found.tail is not None and start is not None
                    and text[found.tail:].strip() != label.strip()):
                print(f"[impersonation] {row['id']} user={row['user']!r} note={row['note']!r}\n  label: {label!r}"
                      f"\n  found: {text[found.tail:] if found.tail is not None else None!r}\n")
        spans = ooc_spans(text)
        truth = labelled_spans(row)
        right = [s for s in spans if any(s.start < e and b < s.end for b, e in truth)]
        ooc["tp_spans"] += len(right)
        ooc["spans"] += len(spans)
        ooc["found"] += sum(any(s.start < e and b < s.end for s in spans) for b, e in truth)
        ooc["labelled"] += len(truth)
        has, real = bool(spans), bool(truth)
        ooc["post_tp"] += has and real
        ooc["post_fp"] += has and not real
        ooc["post_fn"] += real and not has
        only = bool(spans) and ooc_only(text, spans)
        ooc["only_tp"] += only and row["ooc_only"]
        ooc["only_fp"] += only and not row["ooc_only"]
        ooc["only_fn"] += row["ooc_only"] and not only
        if show_errors and (len(right) != len(spans) or any(
                not any(s.start < e and b < s.end for s in spans) for b, e in truth)):
            print(f"[ooc] {row['id']} note={row['note']!r}\n  label: {row['ooc']!r}\n  found: "
                  f"{[(text[s.start:s.end], s.kind) for s in spans]!r}\n")
    return {
        "posts": len(rows), "model_posts": sum(r["role"] == "model" for r in rows),
        "threads": len({r["thread"] for r in rows}),
        "impersonation_tail": {"precision": ratio(tail["tp"], tail["tp"] + tail["fp"]),
                               "recall": ratio(tail["tp"], tail["tp"] + tail["fn"]),
                               "labelled": tail["tp"] + tail["fn"], "found": tail["tp"] + tail["fp"],
                               "exact_cut": ratio(tail["exact"], tail["tp"]),
                               "chars_precision": ratio(tail["cut_right"], tail["cut"]),
                               "chars_recall": ratio(tail["cut_right"], tail["labelled_chars"])},
        "ooc_spans": {"precision": ratio(ooc["tp_spans"], ooc["spans"]), "recall": ratio(ooc["found"],
                                                                                         ooc["labelled"]),
                      "labelled": ooc["labelled"], "found": ooc["spans"]},
        "ooc_posts": {"precision": ratio(ooc["post_tp"], ooc["post_tp"] + ooc["post_fp"]),
                      "recall": ratio(ooc["post_tp"], ooc["post_tp"] + ooc["post_fn"])},
        "ooc_only": {"precision": ratio(ooc["only_tp"], ooc["only_tp"] + ooc["only_fp"]),
                     "recall": ratio(ooc["only_tp"], ooc["only_tp"] + ooc["only_fn"])},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "quality" / "labelled_posts.jsonl"))
    parser.add_argument("--split", choices=["dev", "test", "all"], default="all")
    parser.add_argument("--errors", action="store_true", help="print every disagreement (for tuning on dev)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [json.loads(line) for line in Path(args.data).read_text(encoding="utf-8").splitlines() if line.strip()]
    splits = ["dev", "test"] if args.split == "all" else [args.split]
    results = {split: evaluate([r for r in rows if r["split"] == split], args.errors) for split in splits}
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print("| split | posts (model) | threads | impersonation tail P / R (found / labelled) | exact cut | trimmed "
          "chars P / R | OOC spans P / R (found / labelled) | OOC posts P / R | OOC-only P / R |")
    print("|---|---|---|---|---|---|---|---|---|")
    for split, r in results.items():
        t, o = r["impersonation_tail"], r["ooc_spans"]
        print(f"| {split} | {r['posts']} ({r['model_posts']}) | {r['threads']} | {t['precision']:.3f} / "
              f"{t['recall']:.3f} ({t['found']} / {t['labelled']}) | {t['exact_cut']:.3f} | "
              f"{t['chars_precision']:.3f} / {t['chars_recall']:.3f} | {o['precision']:.3f} / {o['recall']:.3f} "
              f"({o['found']} / {o['labelled']}) | {r['ooc_posts']['precision']:.3f} / "
              f"{r['ooc_posts']['recall']:.3f} | {r['ooc_only']['precision']:.3f} / {r['ooc_only']['recall']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
