"""What the data-quality detectors cost `prepare`: all of them on, against none of them.

    python benchmarks/quality_speed.py [--threads 1000] [--posts 40] [--num-proc 2] [--repeat 3]

Two corpora: the one benchmarks/prepare_speed.py times (synthetic posts of random words with markup and OOC
asides), and one written to make every detector work: posts whose sentences are led by the cast's names, with
dialogue and dialogue tags, possessives, OOC asides of every kind, double posts, and near-copies of earlier
threads. Each is prepared three ways, in turn, `--repeat` times, keeping each one's best:
  none:    the pipeline with no quality pass at all (the mode built without its detectors, as before them)
  flag:    the defaults: every detector counts, nothing changes
  all on:  impersonation and ooc trim, duplicates and low_effort drop, max_genre_share 0.6
Target: `all on` at most 25% slower than `none` on both. Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from prepare_speed import generate  # noqa: E402

NAMES = ["Ilsa Marrow", "Corvin Hale", "Pell", "Sable Quinn", "Old Fenn", "Brannoc", "Tamsin Reed", "Will Archer",
         "Hope Sterling", "Mara"]
COMMON = "lantern stones fog bell water cup rain door hall fire window road cart river bridge letter".split()
GENRES = [("tavern sword dragon mage castle knight spell potion elf realm").split(),
          ("starship orbit reactor android airlock hull planet console drone colony").split(),
          ("phone coffee apartment office laptop subway taxi email car boss").split(),
          ("ghost blood cellar grave corpse ritual shadows scream dread bones").split(),
          ("kitchen garden market bakery picnic laundry neighbor cat tea breakfast").split()]
VERBS = ["nodded", "turned", "looked up", "stepped closer", "shrugged", "laughed", "drew a breath", "waited",
         "reached for the", "set down the", "glanced at the", "pushed open the"]
OOC = ["[OOC: sorry, busy week]", "((brb, dinner))", "(ooc - love this scene!)", "OOC: back on Monday.",
       "// short one, sorry", "@Mara your turn!", "Sorry for the late post, work was wild.",
       "Music: https://example.com/song", "Edit: fixed a typo.", "Hope this is okay!", "lol"]


def sentence(rng: random.Random, cast: list[str], pool: list[str]) -> str:
    def phrase(_, n: int) -> str:
        return " ".join(rng.choice(pool) for _ in range(n))

    who = rng.choice(cast)
    first = who.split()[0]
    kind = rng.random()
    if kind < 0.35:
        return f"{rng.choice([who, first])} {rng.choice(VERBS)} {phrase(rng, rng.randint(3, 9))}."
    if kind < 0.6:
        return f'"{phrase(rng, rng.randint(4, 10)).capitalize()}," {first} {rng.choice(["said", "muttered", "asked"])}.'
    if kind < 0.7:
        return f"{first}'s {phrase(rng, rng.randint(3, 8))} {rng.choice(['shook', 'went still', 'tightened'])}."
    if kind < 0.8:
        return f'"{rng.choice(cast).split()[0]}, {phrase(rng, rng.randint(3, 8))}!" someone called.'
    return f"The {phrase(rng, rng.randint(5, 12))}."


def stress(path: Path, threads: int, posts: int, seed: int = 0) -> None:
    """The stress corpus: every post names the user's character, and some threads repeat (see the docs)."""
    rng = random.Random(seed)
    written = []
    with open(path, "w", encoding="utf-8") as handle:
        for number in range(threads):
            if written and rng.random() < 0.05:  # a thread scraped twice, with a small edit
                row = json.loads(rng.choice(written))
                row["id"] = f"copy-{number}"
                row["posts"][1]["text"] += " Edit: typo."
            else:
                cast = rng.sample(NAMES, rng.randint(2, 5))
                pool = COMMON + rng.choice(GENRES)
                thread_posts = []
                for _ in range(posts):
                    who = rng.choice(cast)
                    # 4 to 14 sentences: about the labelled set's 87 words a post (median)
                    text = " ".join(sentence(rng, cast, pool) for _ in range(rng.randint(4, 14)))
                    if rng.random() < 0.2:
                        cut = text.find(". ") + 1 or len(text)
                        text = f"{text[:cut]} {rng.choice(OOC)} {text[cut:]}".strip()
                    if rng.random() < 0.03 and thread_posts:
                        text = thread_posts[-1]["text"]  # a double post
                        who = thread_posts[-1]["character"]
                    thread_posts.append({"character": who, "text": text})
                row = {"id": f"real-{number}", "user": cast[0], "characters": [{"name": c} for c in cast],
                       "posts": thread_posts}
            line = json.dumps(row)
            written.append(line)
            handle.write(line + "\n")


def run_once(cfg, tokenizer, detectors: bool) -> tuple[float, dict]:
    from grouprp.prepare import prepare

    # none: the group mode built without its Quality, which is the pipeline as it was before the detectors
    patch = mock.patch("grouprp.modes.group.Quality", lambda cfg: None) if not detectors else nullcontext()
    with patch:
        started = time.perf_counter()
        manifest = prepare(cfg, tokenizer, force=True).manifest
        return time.perf_counter() - started, manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1000)
    parser.add_argument("--posts", type=int, default=40)
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from grouprp.config import load_config
    from grouprp.prepare import load_tokenizer

    modes = {"none": [], "flag": [],
             "all on": ["data.quality.impersonation=trim", "data.quality.ooc=trim", "data.quality.duplicates=drop",
                        "data.quality.low_effort=drop", "data.quality.max_genre_share=0.6"]}
    print(f"{args.threads} threads x {args.posts} posts, num_proc {args.num_proc}, {os.cpu_count()} CPUs, "
          f"best of {args.repeat}")
    with tempfile.TemporaryDirectory() as tmp:
        for corpus in ("prepare_speed", "stress"):
            data = Path(tmp) / f"{corpus}.jsonl"
            if corpus == "prepare_speed":
                generate(data, args.threads, args.posts, words=(150, 300))
            else:
                stress(data, args.threads, args.posts)
            common = [f"output_dir={tmp}/out", f"data.path={data}", f"data.num_proc={args.num_proc}",
                      f"model.tokenizer={ROOT / 'assets' / 'tokenizer'}"]
            configs = {name: load_config(None, [*common, *overrides]) for name, overrides in modes.items()}
            tokenizer = load_tokenizer(configs["none"])
            times, manifests = {}, {}
            for _ in range(args.repeat):  # the modes in turn, so that a slow spell of the machine hits them alike
                for name, cfg in configs.items():
                    seconds, manifests[name] = run_once(cfg, tokenizer, name != "none")
                    times[name] = min(times.get(name, float("inf")), seconds)
            for name, manifest in manifests.items():
                q = manifest.get("quality", {})
                found = {d: q[d]["posts_found"] for d in ("impersonation", "ooc", "duplicates", "low_effort")} if q \
                    else {}
                repeated = q.get("duplicates", {}).get("threads_found", 0) if q else 0
                print(f"{corpus:13} {name:7} {times[name]:7.2f} s  {times[name] / times['none'] - 1:+6.1%}  "
                      f"{manifest['examples']:,} examples, {manifest['tokens']:,} tokens; found {found}, "
                      f"repeated threads {repeated}, dropped {dict((k, v) for k, v in manifest['dropped'].items() if v)}")
    print("target: all on at most +25% over none")


if __name__ == "__main__":
    main()
