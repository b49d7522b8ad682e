"""How long `grouprp inspect` takes on 4,000 threads, how big its report is, and how fast a browser opens it.

    python benchmarks/report_speed.py [--threads 4000] [--posts 40] [--num-proc 2]

Writes 4,000 threads of benchmarks/quality_speed.py's corpus (names, dialogue, OOC asides, repeats), runs the
report's collection and rendering as `grouprp inspect` does, and opens the HTML in headless Chromium (Debian's
`chromium`), reading back the page's own clock (performance.now() when its script has run, from navigation
start). Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from quality_speed import stress  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=4000)
    parser.add_argument("--posts", type=int, default=40)
    parser.add_argument("--num-proc", type=int, default=2)
    args = parser.parse_args()

    from grouprp.config import load_config
    from grouprp.prepare import load_tokenizer
    from grouprp.report import collect, render_html

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "threads.jsonl"
        stress(data, args.threads, args.posts)
        cfg = load_config(None, [f"output_dir={tmp}/out", f"data.path={data}", f"data.num_proc={args.num_proc}",
                                 f"model.tokenizer={ROOT / 'assets' / 'tokenizer'}"])
        tokenizer = load_tokenizer(cfg)
        started = time.perf_counter()
        report = collect(cfg, tokenizer)
        collected = time.perf_counter() - started
        started = time.perf_counter()
        page = render_html(report)
        rendered = time.perf_counter() - started
        path = Path(tmp) / "report.html"
        path.write_text(page, encoding="utf-8")
        size = path.stat().st_size
        print(f"{args.threads:,} threads x {args.posts} posts, num_proc {args.num_proc}, {os.cpu_count()} CPUs: "
              f"{report['examples_total']:,} examples, {len(report['examples'])} in the report")
        print(f"collect (the pipeline, keeping text) {collected:.1f} s, render {rendered:.2f} s, "
              f"report {size / 1e6:.2f} MB")
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            print("no chromium: the browser figure is not measured")
            return
        started = time.perf_counter()
        done = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", path.as_uri()],
                              capture_output=True, text=True, timeout=300)
        wall = time.perf_counter() - started
        ready = re.search(r'data-ready-ms="(\d+)"', done.stdout)
        errors = 'data-errors="1"' in done.stdout
        print(f"headless chromium: page script done {ready.group(1) if ready else '?'} ms after navigation start; "
              f"whole browser run {wall:.1f} s (start-up included); script errors: {'yes' if errors else 'none'}")


if __name__ == "__main__":
    main()
