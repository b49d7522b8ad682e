"""How fast `prepare` tokenizes, windowed and not, against the tokenizer's own batch encoding (the ceiling).

    python benchmarks/prepare_speed.py [--threads 1000] [--posts 40] [--num-proc 2] [--repeat 2] [--quality-off]
                                       [--ask-offsets]

Generates synthetic forum threads (markup, OOC asides, sheets) long enough that most exceed one 8,192-token
window, then times the real `prepare` twice: at `sequence_len` 8192, where long threads are cut into windows, and
with a `sequence_len` so large that nothing is windowed. Each is set against its ceiling: one `tokenizer(texts)`
call on the same rendered examples (the windows, or the whole threads), the Rust tokenizer's batch encoding on
every core with no Python work around it; beside it, the bare Rust encoder asked for ids alone
(`encode_batch_fast`, no offsets), the least the tokenizer itself can do. Target: windowed `prepare` at least 0.7
of its ceiling with 2 processes.
Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import tempfile
import time
from pathlib import Path
from typing import Union

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("the lantern flickered as she stepped onto the wet stones of the harbour and the gulls went quiet "
         "he drew his blade slowly listening for footsteps in the fog while the bell tolled twice across "
         "water magic hummed under her skin like a second heartbeat old fenn laughed and poured another cup").split()
NAMES = ["Ilsa", "Corvin", "Mara Quill", "Old Fenn", "Sable", "Tamsin", "Brannoc"]


def post_text(rng: random.Random, words: tuple[int, int]) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(*words))).capitalize() + "."
    twist = rng.random()
    if twist < 0.15:
        text = f"[b]{text[:30]}[/b]{text[30:]} ((brb))"
    elif twist < 0.25:
        text = f"<i>{text}</i>&nbsp;&amp; more\r\n\r\n\r\nlater"
    elif twist < 0.28:
        text = "OOC: sorry for the late post!"
    return text


def generate(path: Path, threads: int, posts: Union[int, tuple[int, int]], seed: int = 0,
             words: tuple[int, int] = (40, 90)) -> None:
    """Forum threads of `posts` posts each, or of a number drawn from `posts` (min, max) for each thread."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for number in range(threads):
            cast = rng.sample(NAMES, rng.randint(2, 7))
            characters = [{"name": c, "player": c.lower(), "sheet": f"Name: {c}\nAge: {rng.randint(16, 70)}\n"
                                                                     f"Strengths: brave, quick, kind"} for c in cast]
            count = posts if isinstance(posts, int) else rng.randint(*posts)
            thread_posts = [{"author": c.lower(), "text": post_text(rng, words)}
                            for c in (rng.choice(cast) for _ in range(count))]
            handle.write(json.dumps({"id": f"bench-{number}", "characters": characters, "posts": thread_posts}) + "\n")


def measure(cfg, tokenizer, repeat: int) -> dict:
    from grouprp.packing import fill
    from grouprp.prepare import load_prepared, preview_examples, prepare

    texts = [example.text for _, example in preview_examples(cfg, None, tokenizer)]
    rounds = []  # (ceiling s, prepare s): interleaved, so that a slow spell of a shared machine hits both alike
    cpu = []  # (ceiling, prepare) CPU seconds, this process's threads and the workers: what neighbours slow less
    bare = []  # ids alone (encode_batch_fast: no offsets, no Python lists): the least the tokenizer can do
    for _ in range(repeat):
        os.environ["TOKENIZERS_PARALLELISM"] = "true"  # prepare turns it off in this process for its workers
        started, used = time.perf_counter(), _cpu_seconds()
        encoded = tokenizer(texts, add_special_tokens=True)
        ceiling, ceiling_cpu = time.perf_counter() - started, _cpu_seconds() - used
        started = time.perf_counter()
        tokenizer.backend_tokenizer.encode_batch_fast(texts, add_special_tokens=True)
        bare.append(time.perf_counter() - started)
        del os.environ["TOKENIZERS_PARALLELISM"]
        started, used = time.perf_counter(), _cpu_seconds()
        manifest = prepare(cfg, tokenizer, force=True).manifest
        rounds.append((ceiling, time.perf_counter() - started))
        cpu.append((ceiling_cpu, _cpu_seconds() - used))
    tokens = sum(len(ids) for ids in encoded["input_ids"])
    assert tokens == manifest["tokens"], (tokens, manifest["tokens"])
    lengths = load_prepared(cfg.output_dir)[0]["length"]
    packed, unpacked = (fill(lengths, cfg.data.sequence_len, packing) for packing in (True, False))
    ceiling, seconds = min(c for c, _ in rounds), min(s for _, s in rounds)
    return {"seconds": seconds, "ceiling": ceiling, "bare": min(bare), "tokens": tokens,
            "examples": manifest["examples"],
            "ratio": ceiling / seconds, "round_ratios": [c / s for c, s in rounds],
            "cpu": (min(c for c, _ in cpu), min(s for _, s in cpu)),
            "windows_dropped": sum(manifest["windows_dropped"].values()),
            "trained": manifest["trained_tokens"], "packed_rows": packed.rows, "packed": packed.efficiency,
            "unpacked": unpacked.efficiency}


def _cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its ended children (prepare's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1000)
    parser.add_argument("--posts", type=int, default=40)
    parser.add_argument("--words", type=int, nargs=2, default=[150, 300], help="words per post (min max)")
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--sequence-len", type=int, default=8192)
    parser.add_argument("--quality-off", action="store_true",
                        help="turn the data.quality detectors off (on by default, as in prepare)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of both sides, interleaved; the best of each")
    parser.add_argument("--ask-offsets", action="store_true",
                        help="ask the tokenizer for every token's offsets, as prepare did before commit 4e71436")
    args = parser.parse_args()
    if args.ask_offsets:
        import grouprp.tokenize

        grouprp.tokenize.byte_level = lambda backend: False  # the workers are forked: they see this too

    from grouprp.config import load_config
    from grouprp.prepare import load_tokenizer
    from grouprp.quality.review import DETECTORS

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "threads.jsonl"
        generate(data, args.threads, args.posts, words=tuple(args.words))
        common = [f"output_dir={tmp}/out", f"data.path={data}", f"data.num_proc={args.num_proc}",
                  f"model.tokenizer={ROOT / 'assets' / 'tokenizer'}"]
        if args.quality_off:
            common += [f"data.quality.{name}.mode=off" for name in DETECTORS]
        results = {}
        for name, sequence_len in (("windowed", args.sequence_len), ("not windowed", 1 << 20)):
            cfg = load_config(None, [*common, f"data.sequence_len={sequence_len}"])
            results[name] = measure(cfg, load_tokenizer(cfg), args.repeat)

    print(f"{args.threads} threads x {args.posts} posts of {args.words[0]}-{args.words[1]} words, num_proc "
          f"{args.num_proc}, {os.cpu_count()} CPUs, best of {args.repeat} interleaved rounds, quality detectors "
          f"{'off' if args.quality_off else 'on'}{', offsets asked of the tokenizer' if args.ask_offsets else ''}")
    for name, r in results.items():
        print(f"{name:13} {r['examples']:6,} examples {r['tokens']:11,} tokens: prepare {r['seconds']:6.2f} s "
              f"{r['tokens'] / r['seconds']:11,.0f} tok/s | ceiling {r['ceiling']:6.2f} s "
              f"{r['tokens'] / r['ceiling']:11,.0f} tok/s | ratio {r['ratio']:.2f} (rounds "
              f"{', '.join(f'{x:.2f}' for x in r['round_ratios'])}) | windows dropped {r['windows_dropped']}, "
              f"trained tokens {r['trained']:,}")
        print(f"{'':13} CPU seconds: prepare {r['cpu'][1]:.2f}, ceiling {r['cpu'][0]:.2f}, ratio "
              f"{r['cpu'][0] / r['cpu'][1]:.2f} | ids alone (encode_batch_fast) {r['bare']:.2f} s, ratio "
              f"{r['bare'] / r['seconds']:.2f}")
    windowed = results["windowed"]
    print(f"token efficiency at sequence_len {args.sequence_len:,}: packed {windowed['packed']:.3f} "
          f"({windowed['packed_rows']:,} rows), not packed {windowed['unpacked']:.3f}")
    print("target: windowed ratio >= 0.70")


if __name__ == "__main__":
    main()
