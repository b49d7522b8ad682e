"""Peak memory of reading a large posts table into threads (the sources are streamed in two passes).

    python benchmarks/read_memory.py [--posts 200000] [--posts-per-thread 40]

Writes a CSV of generated posts to a temporary folder, then reads it in a fresh Python process and prints that
process's peak resident memory (VmHWM: unlike ru_maxrss it does not carry over the parent's through exec).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

READ = """
from grouprp.config import DataConfig
from grouprp.sources import read_threads
posts = sum(len(t.posts) for t in read_threads(DataConfig(path={path!r})))
peak = next(line for line in open('/proc/self/status') if line.startswith('VmHWM')).split()[1]
print(posts, int(peak) // 1024)
"""


def write_table(path: Path, posts: int, per_thread: int) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["thread_id", "position", "author", "text"])
        for i in range(posts):
            writer.writerow([f"thread-{i // per_thread}", i % per_thread, f"user{i % 5}",
                             "A fairly ordinary post of some length. " * 8])


def measure(posts: int, per_thread: int, folder: Path) -> dict[str, int]:
    """Posts read, peak MB of the reading process, and the table's size in MB."""
    path = folder / "posts.csv"
    write_table(path, posts, per_thread)
    out = subprocess.run([sys.executable, "-c", READ.format(path=str(path))], capture_output=True, text=True,
                         check=True).stdout.split()
    return {"posts": int(out[0]), "peak_mb": int(out[1]), "file_mb": path.stat().st_size // 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=200_000)
    parser.add_argument("--posts-per-thread", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.posts, args.posts_per_thread, Path(tmp))
    print(f"read {result['posts']:,} posts from a {result['file_mb']} MB CSV: peak {result['peak_mb']} MB resident")


if __name__ == "__main__":
    main()
