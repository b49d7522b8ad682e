"""The `grouprp` command: prepare, preview, stats, train. Thin: parse, load the config, call the stage.

`grouprp train` runs under any launcher as well as alone:
    deepspeed --num_gpus 2 --module grouprp train configs/lyra_lora.yaml
    torchrun --nproc_per_node 2 -m grouprp train configs/lyra_lora.yaml
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from typing import Optional, Sequence

from grouprp.config import ConfigError, describe, load_config
from grouprp.schema import DataError

log = logging.getLogger("grouprp")

_LOCAL_RANK = re.compile(r"^--local[-_]rank(=\d+)?$")
_REPORT_GRACE_SECONDS = 30


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = without_local_rank(sys.argv[1:] if argv is None else list(argv))
    parser = _parser()
    # overrides may come after options too (`preview c.yaml --json data.min_turns=3`), which argparse's
    # positional handling does not allow: collect the key=value words it leaves over
    args, extra = parser.parse_known_args(argv)
    unknown = [word for word in extra if word.startswith("-") or "=" not in word]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        args.overrides = [*getattr(args, "overrides", []), *extra]
    rank = launcher_rank()
    setup_logging(logging.INFO if rank == 0 else logging.WARNING)
    try:
        return args.run(args)
    except (ConfigError, DataError) as exc:
        if rank == 0:  # under a launcher every rank finds the same problem; one report is enough
            print(f"error: {exc}", file=sys.stderr)
        else:
            # launchers stop every rank once one exits: leave rank 0 the time to say what is wrong first
            time.sleep(_REPORT_GRACE_SECONDS)
        return 2
    except BrokenPipeError:
        # the reader went away (`grouprp config-help | head`): stop quietly, and keep Python's exit-time flush
        # of stdout from failing again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def without_local_rank(argv: list[str]) -> list[str]:
    """The arguments less `--local_rank N` / `--local_rank=N`, which the deepspeed launcher adds (the rank is
    also in the LOCAL_RANK environment variable, where accelerate reads it)."""
    out, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif _LOCAL_RANK.match(word):
            skip = "=" not in word
        else:
            out.append(word)
    return out


def launcher_rank() -> int:
    return int(os.environ.get("RANK", "0"))


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a message comes, not the one there was when logging was set up."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(level: int = logging.INFO) -> None:
    """grouprp's own messages to stderr as `grouprp: ...`; other libraries keep their own settings."""
    handler = _Stderr()
    handler.setFormatter(logging.Formatter("grouprp: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    # bitsandbytes warns on every 8-bit matmul whose inputs are not fp16 (always, on CPU): expected, and noise
    logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grouprp", description="Fine-tune roleplay models with LoRA.")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, run) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("config", help="the run's YAML config")
        sub.add_argument("overrides", nargs="*", metavar="key=value",
                         help="dotted-key overrides, e.g. data.min_turns=4")
        sub.set_defaults(run=run)
        return sub

    prepare = command("prepare", "tokenize the data and write the dataset and manifest.json to output_dir", _prepare)
    prepare.add_argument("--force", action="store_true", help="rebuild even when the cached dataset matches")
    preview = command("preview", "print rendered examples without loading a model or tokenizer", _preview)
    preview.add_argument("--n", type=int, default=3, help="how many examples (default 3; 0 for all)")
    preview.add_argument("--json", action="store_true", help='one JSON line per example: {"id", "text", "trained"}')
    preview.add_argument("--tokenizer", help="a local tokenizer folder, to show examples exactly as prepare "
                                             "builds them (windows of long threads, trimmed histories)")
    command("stats", "print what the data becomes (kept, dropped, trained); writes nothing", _stats)
    command("train", "train a LoRA adapter (alone, or under deepspeed / torchrun: see `grouprp train -h`)", _train)
    keys = commands.add_parser("config-help", help="list every config key with its default and meaning")
    keys.set_defaults(run=_config_help)
    return parser


def _prepare(args) -> int:
    from grouprp.prepare import prepare

    cfg = load_config(args.config, args.overrides)
    prepare(cfg, force=args.force)
    return 0


def _preview(args) -> int:
    from grouprp.modes import get_mode
    from grouprp.prepare import load_tokenizer, preview_examples

    cfg = load_config(args.config, args.overrides)
    tokenizer = None
    if args.tokenizer:
        cfg.model.tokenizer = args.tokenizer
        tokenizer = load_tokenizer(cfg)
    else:
        print(f"grouprp: {get_mode(cfg).without_tokenizer}", file=sys.stderr)
    for number, (example_id, example) in enumerate(preview_examples(cfg, args.n or None, tokenizer)):
        if args.json:
            print(json.dumps({"id": example_id, "text": example.text,
                              "trained": [list(s) for s in example.trained]}, ensure_ascii=False))
        else:
            print(f"===== example {number + 1}: {example_id} (trained text between \u27e6 and \u27e7) =====")
            print(_marked(example))
    return 0


def _marked(example) -> str:
    out, position = [], 0
    for start, end in example.trained:
        out += [example.text[position:start], "\u27e6", example.text[start:end], "\u27e7"]
        position = end
    out.append(example.text[position:])
    return "".join(out)


def _stats(args) -> int:
    from grouprp.prepare import summarize

    cfg = load_config(args.config, args.overrides)
    print(format_stats(summarize(cfg)))
    return 0


def format_stats(m: dict) -> str:
    """The manifest as a short human report."""
    def counts(d: dict) -> str:
        return ", ".join(f"{k} {v:,}" for k, v in d.items())

    def spread(d: dict) -> str:
        return "  ".join(f"{k} {v:,.0f}" if k != "mean" else f"mean {v:,.1f}" for k, v in d.items()) or "-"

    s = m["stats"]
    lines = [
        f"entries:            {m['entries_in']:,} in, {m['entries_kept']:,} kept",
        f"dropped entries:    {counts(m['dropped'])}",
        f"removed posts:      {counts(m['posts_removed'])}",
        f"dropped windows:    {counts(m['windows_dropped'])}",
        f"examples:           {m['examples']:,} ({m['template']}, sequence_len {m['sequence_len']:,})",
        f"tokens:             {m['tokens']:,}, trained {m['trained_tokens']:,} ({s['trained_share']:.1%})",
        f"tokens/example:     {spread(s['tokens_per_example'])}",
        f"turns/example:      {spread(s['turns_per_example'])}",
        f"characters/example: {spread(s['characters_per_example'])}",
    ]
    return "\n".join(lines)


def _train(args) -> int:
    from grouprp.train import run

    run(load_config(args.config, args.overrides))
    return 0


def _config_help(args) -> int:
    for key, help, default in describe():
        print(f"{key} = {json.dumps(default)}\n    {help}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
