"""Cleaning time on pathological posts of 10k, 100k and 1M characters: it must grow linearly with the length.

    python benchmarks/clean_speed.py [--sizes 10000 100000 1000000] [--repeat 3]

Each case is a post built to defeat regular expressions that rescan text: unclosed asides and tags repeated
thousands of times, runs of markup, long runs of spaces inside a line, trailing OOC lines, unterminated tag
arguments. For each case and size it prints the best of `--repeat` runs of `clean_post` and the time per
character; linear cleaning keeps the time per character roughly flat from 10k to 1M. Results go in
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time

from grouprp.clean import clean_post

CASES = {
    "unclosed asides ((": "Tamsin waited (( brb ",
    "unclosed [b] and <b>": "[b]Halt <b>now ",
    "unclosed [quote]": "[quote=ilsa]she said ",
    "unclosed [img] and <blockquote>": "[img]x.png <blockquote>old ",
    "nested [b][i]": "[b][i]deep ",
    "closed markup runs": "[color=red][size=4]ember[/size][/color] <span class='x'>ash</span> ",
    "unterminated tag arguments": "[color=#c33 and [url=http://example.org ",
    "stray closing tags": "[/b][/quote]</i></blockquote> word ",
    "entities": "plum &amp; cake &quot;now&quot; ",
}


def post(case: str, size: int) -> str:
    if case == "spaces inside one line":
        return "a" + " " * (size - 2) + "b"
    if case == "trailing OOC lines":
        return "Corvin bowed.\n" + "OOC: later\n" * (size // 11)
    unit = CASES[case]
    return (unit * (size // len(unit) + 1))[:size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cases = [*CASES, "spaces inside one line", "trailing OOC lines"]
    print(f"{'case':34}" + "".join(f"{size:>14,}" for size in args.sizes) + "   ns/char at each size")
    for case in cases:
        seconds = []
        for size in args.sizes:
            text = post(case, size)
            best = float("inf")
            for _ in range(args.repeat):
                started = time.perf_counter()
                clean_post(text)
                best = min(best, time.perf_counter() - started)
            seconds.append(best)
        per_char = "  ".join(f"{s / size * 1e9:6.0f}" for s, size in zip(seconds, args.sizes))
        print(f"{case:34}" + "".join(f"{s:13.4f}s" for s in seconds) + f"   {per_char}")


if __name__ == "__main__":
    main()
