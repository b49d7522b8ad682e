"""The `grouprp` command: one subcommand per stage (prepare, preview, stats, inspect, train, plan, slurm, chat,
eval, merge, export-preset, card, config-help). Thin: parse, load the config, call the stage.

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
from pathlib import Path
from typing import Optional, Sequence

from grouprp.config import ConfigError, describe, load_config
from grouprp.logs import launcher_rank, quiet_third_party, setup_logging
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
    unknown = [word for word in extra if word.startswith("-") or "=" not in word or not hasattr(args, "overrides")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        args.overrides = [*getattr(args, "overrides", []), *extra]
    rank = launcher_rank()
    setup_logging(logging.INFO if rank == 0 else logging.WARNING)
    quiet_third_party()
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
    inspect = command("inspect", "a self-contained HTML report of the data: accounting, sizes, genres, characters, "
                                 "and examples with trained and flagged text marked", _inspect)
    inspect.add_argument("--out", help="the file to write (default: report.html, or report.json with --json)")
    inspect.add_argument("--json", action="store_true", help="the same data as JSON, for scripts")
    inspect.add_argument("--examples", type=int, default=200, help="examples to include (default 200; those with "
                                                                   "something flagged, trimmed or removed first)")
    command("train", "train a LoRA adapter (alone, or under deepspeed / torchrun: see `grouprp train -h`)", _train)
    slurm = command("slurm", "print an sbatch script that trains this config on a Slurm allocation (multi-node, "
                             "requeued with a checkpoint before its time limit)", _slurm)
    slurm.add_argument("--nodes", type=int, default=1, help="nodes (default 1)")
    slurm.add_argument("--gpus-per-node", type=int, default=2, help="GPUs on each node (default 2)")
    slurm.add_argument("--partition", help="the Slurm partition")
    slurm.add_argument("--time", default="24:00:00", help="time limit per job, requeued after it (default 24:00:00)")
    slurm.add_argument("--account", help="the Slurm account to charge")
    slurm.add_argument("--launcher", choices=["deepspeed", "torchrun"], default="deepspeed",
                       help="deepspeed (a hostfile of the nodes) or torchrun (c10d rendezvous on the first node)")
    slurm.add_argument("--mem", default="128G", help="memory per node (default 128G)")
    slurm.add_argument("--out", help="write the script to this file instead of printing it")
    slurm.add_argument("--submit", action="store_true", help="pass the script to sbatch (written to --out, or to "
                                                            "grouprp-JOB.sbatch here)")
    plan = command("plan", "the peak memory per GPU of this config, from the model's config.json alone: a "
                           "breakdown, whether it fits, and what to change if not", _plan)
    plan.add_argument("--gpus", help="the GPUs, with a count: 2xA100-40GB, 1xRTX4090-24GB, 4x80GB (default: the "
                                     "GPUs here, if any)")
    card = commands.add_parser("card", help="print a character card's fields as grouprp uses them (a sheet in group "
                                            "threads, the card of single-character mode)")
    card.add_argument("path", metavar="PATH", help="a Character Card (.json or .png) or a grouprp YAML card")
    card.add_argument("--config", help="a config whose data.sheet_schema, data.card_sheet and data.user_label to use")
    card.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of that config")
    card.set_defaults(run=_card)
    keys = commands.add_parser("config-help", help="list every config key with its default and meaning")
    keys.set_defaults(run=_config_help)

    def run_command(name: str, help: str, run) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("run_dir", metavar="RUN_DIR", help="a finished run's output_dir (adapter, grouprp.json)")
        sub.set_defaults(run=run)
        return sub

    chat = run_command("chat", "talk to a trained model in the format it learned", _chat)
    where = chat.add_mutually_exclusive_group()
    where.add_argument("--scene", help="a YAML/JSON scene: user and characters ({name, sheet}); scenario for "
                                       "single-character runs")
    where.add_argument("--thread", metavar="FILE:ID", help="start from a thread of a data file, its posts replayed")
    chat.add_argument("--script", metavar="FILE.jsonl", help='JSON lines in ({"text": ...} or {"command": ...}, '
                                                             '"-" for stdin), one JSON line out per model turn')
    chat.add_argument("--save", metavar="FILE", help="at the end, append the conversation to FILE as a thread")
    _model_options(chat)
    evaluate = run_command("eval", "loss of base and base + adapter on held-out data, and generation statistics",
                           _eval)
    evaluate.add_argument("--data", help="held-out data (a data file or folder); default: the run's own eval split")
    evaluate.add_argument("--max-examples", type=int, default=200, help="evaluate at most this many examples")
    evaluate.add_argument("--generations", type=int, default=4, help="continuations generated by each model")
    _model_options(evaluate)
    merge = run_command("merge", "fold the adapter into its 16-bit base; loadable without PEFT", _merge)
    merge.add_argument("--out", required=True, help="a new folder for the merged model")
    export = run_command("export-preset", "front-end presets that reproduce the trained format", _export)
    export.add_argument("--to", choices=["sillytavern"], default="sillytavern", help="the front-end")
    export.add_argument("--out", required=True, help="the folder to write the presets to")
    return parser


def _model_options(sub: argparse.ArgumentParser) -> None:
    from grouprp.inference import Sampling

    defaults = Sampling()
    sub.add_argument("--no-8bit", action="store_true", help="load the base in full precision even if the run "
                                                            "trained it in 8 bits")
    sub.add_argument("--temperature", type=float, default=defaults.temperature, help="sampling temperature (0: "
                                                                                     "greedy)")
    sub.add_argument("--min-p", type=float, default=defaults.min_p, help="min_p sampling")
    sub.add_argument("--top-p", type=float, default=defaults.top_p, help="nucleus sampling")
    sub.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens, help="longest turn, in tokens")
    sub.add_argument("--repetition-penalty", type=float, default=defaults.repetition_penalty,
                     help="repetition penalty (1: none)")
    sub.add_argument("--seed", type=int, default=None, help="seed for sampling, for repeatable output")


def _sampling(args):
    from grouprp.inference import Sampling

    if args.seed is not None:
        from transformers import set_seed

        set_seed(args.seed)
    return Sampling(temperature=args.temperature, min_p=args.min_p, top_p=args.top_p,
                    max_new_tokens=args.max_new_tokens, repetition_penalty=args.repetition_penalty)


def _loaded(args, run):
    """The run's model and tokenizer, and the sampling settings of the command line."""
    from grouprp.inference import load_model, load_tokenizer

    return load_model(run, load_in_8bit=False if args.no_8bit else None), load_tokenizer(run), _sampling(args)


def _chat(args) -> int:
    from grouprp.chat import ChatSession, run_script, scene_from_file, scene_from_thread, single_character_scene
    from grouprp.inference import load_run

    run = load_run(args.run_dir)  # checked before the model loads
    if args.scene:
        scene = scene_from_file(args.scene, run)
    elif args.thread:
        scene = scene_from_thread(args.thread, run)
    elif run.cfg.data.mode == "single_character":
        scene = single_character_scene(run)
    else:
        raise DataError("chat: a group run needs a scene: --scene FILE (user and characters) or --thread FILE:ID")
    model, tokenizer, sampling = _loaded(args, run)
    session = ChatSession(run, model, tokenizer, scene, sampling)
    if args.script:
        lines = sys.stdin if args.script == "-" else _lines(args.script)
        run_script(session, lines, "stdin" if args.script == "-" else args.script)
    else:
        _interactive(session)
    if args.save:
        log.info("saved the conversation to %s", session.save(args.save))
    return 0


def _lines(path: str):
    try:
        return open(path, encoding="utf-8-sig").read().splitlines()
    except OSError as exc:
        raise DataError(f"--script: cannot read {path} ({exc.strerror})") from None


def _interactive(session) -> None:
    from grouprp.chat import act, parse_command

    print(f"You play {session.scene.user}; the model plays {', '.join(session.characters)}. Type your post; "
          "/as NAME, /more, /undo, /retry, /save FILE, /quit.", file=sys.stderr)
    for turn in session.scene.turns:
        print(f"{turn.character}: {turn.text}\n")
    while True:
        try:
            line = input(f"{session.scene.user}> ")
        except EOFError:
            break
        if not line.strip():
            continue
        try:
            command, argument = parse_command(line)
            if command == "/quit":
                break
            named = session.resolve(argument) if command == "/as" else (
                session.characters[0] if session.single else None)
            if named:
                print(f"{named}: ", end="", flush=True)
            turns = act(session, command, argument, on_text=lambda text: print(text, end="", flush=True))
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            continue
        for turn in turns:
            print("\n" + ("(cut where it began writing your character)\n" if turn.impersonation else ""))


def _eval(args) -> int:
    from grouprp.evaluate import evaluate, format_report, held_out_rows, write_report
    from grouprp.inference import load_run

    run = load_run(args.run_dir)
    model, tokenizer, sampling = _loaded(args, run)
    rows, source = held_out_rows(run, tokenizer, args.data, args.max_examples)
    report = evaluate(run, model, tokenizer, rows, args.generations, sampling, source)
    print(format_report(report))
    log.info("wrote %s", write_report(run, report))
    return 0


def _merge(args) -> int:
    from grouprp.inference import Sampling, load_run
    from grouprp.merge import merge

    merge(load_run(args.run_dir), Path(args.out), Sampling())
    return 0


def _export(args) -> int:
    from grouprp.inference import load_run
    from grouprp.presets import export_sillytavern

    run = load_run(args.run_dir)
    for path in export_sillytavern(run.format(), f"grouprp-{run.path.name}", Path(args.out)):
        print(path)
    return 0


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


def _inspect(args) -> int:
    from grouprp.report import collect, write

    cfg = load_config(args.config, args.overrides)
    out = Path(args.out or ("report.json" if args.json else "report.html"))
    if out.parent and not out.parent.is_dir():
        raise ConfigError(f"--out: {out.parent} is not a folder")
    data = collect(cfg, examples=max(args.examples, 0), source=args.config)
    write(data, out, as_json=args.json)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB: {len(data['examples']):,} of "
          f"{data['examples_total']:,} examples)")
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
        f"changed posts:      {counts(m['posts_changed'])}",
        f"dropped windows:    {counts(m['windows_dropped'])}",
        *([f"left out of input: {counts(m['left_out'])}"] if m.get("left_out") else []),
        f"examples:           {m['examples']:,} ({m['template']}, sequence_len {m['sequence_len']:,})",
        f"tokens:             {m['tokens']:,}, trained {m['trained_tokens']:,} ({s['trained_share']:.1%})",
        f"tokens/example:     {spread(s['tokens_per_example'])}",
        f"turns/example:      {spread(s['turns_per_example'])}",
        f"characters/example: {spread(s['characters_per_example'])}",
    ]
    if "quality" in m:
        lines += _quality_lines(m["quality"])
    if "steps" in m:
        steps = m["steps"]
        lines += [f"token efficiency: {steps['token_efficiency']:.3f} (real tokens over {steps['rows']:,} rows of "
                  f"sequence_len {m['sequence_len']:,}; packing {'on' if steps['packing'] else 'off'})",
                  f"per optimizer step: {steps['rows_per_step']} rows, about {steps['examples_per_step']:,} examples "
                  f"and {steps['tokens_per_step']:,} tokens"]
    return "\n".join(lines)


def _quality_lines(q: dict) -> list[str]:
    """What the data-quality detectors found (whatever their mode), and the genre shares."""
    from grouprp.quality.review import DETECTORS

    lines = []
    for name in DETECTORS:
        d = q[name]
        kinds = ", ".join(f"{k} {v:,}" for k, v in d["kinds"].items())
        found = f"{d['posts_found']:,} posts" + (f" ({kinds})" if kinds else "")
        if name == "duplicates":
            found += f"; {d['threads_found']:,} repeated threads ({d['threads_exact']:,} exact)"
        lines.append(f"{name + ':':<20}{found} [{d['mode']}]")
    genres = q["genres"]
    shares = ", ".join(f"{g} {v:.0%}" for g, v in genres["shares"].items()) or "-"
    lines.append(f"genres (main):      {shares}")
    if genres.get("left_out"):
        left = ", ".join(f"{g} {n:,}" for g, n in genres["left_out"].items())
        lines.append(f"genre cap {genres['max_share']:.0%}:     left out {left} (was "
                     + ", ".join(f"{g} {v:.0%}" for g, v in genres["shares_before_cap"].items()) + ")")
    return lines


def _train(args) -> int:
    from grouprp.checkpoints import REQUEUE_EXIT
    from grouprp.preemption import Preempted
    from grouprp.train import run

    try:
        run(load_config(args.config, args.overrides))
    except Preempted as stop:
        if launcher_rank() == 0:
            log.warning("%s; exit %d: run again (or requeue the job) to resume from it", stop, REQUEUE_EXIT)
        return REQUEUE_EXIT
    return 0


def _slurm(args) -> int:
    import subprocess

    from grouprp.slurm import Shape, render

    load_config(args.config, args.overrides)  # a wrong key or value stops here, not hours later on the cluster
    shape = Shape(nodes=args.nodes, gpus_per_node=args.gpus_per_node, partition=args.partition, time=args.time,
                  account=args.account, launcher=args.launcher, mem=args.mem)
    try:
        script = render(shape, args.config, tuple(args.overrides))
    except ValueError as exc:
        raise ConfigError(f"slurm: {exc}") from None
    if not args.out and not args.submit:
        print(script, end="")
        return 0
    out = Path(args.out or f"grouprp-{time.strftime('%Y%m%d-%H%M%S')}.sbatch")
    out.write_text(script)
    out.chmod(0o755)
    log.info("wrote %s", out)
    if args.submit:
        try:
            done = subprocess.run(["sbatch", str(out)], capture_output=True, text=True)
        except FileNotFoundError:
            raise DataError(f"--submit: no sbatch here; submit {out} from a Slurm login node") from None
        if done.returncode != 0:
            raise DataError(f"sbatch {out} failed: {(done.stderr or done.stdout).strip()}")
        print(done.stdout.strip())
    return 0


def _plan(args) -> int:
    from grouprp.plan import plan_for, report

    cfg = load_config(args.config, args.overrides)
    plan, shape = plan_for(cfg, args.gpus)
    print(report(plan, cfg, shape))
    return 0


def _card(args) -> int:
    from grouprp.config import DataConfig
    from grouprp.sheets import SheetSchema, render_bio
    from grouprp.sources.cards import TAVERN_FIELDS, TAVERN_SUFFIXES, load_card, read_tavern_card

    data = load_config(args.config, args.overrides).data if args.config else DataConfig()
    path = Path(args.path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    lines = []
    tavern = read_tavern_card(path) if path.suffix.lower() in TAVERN_SUFFIXES else None
    if tavern is not None:
        read_from = f" (from the {tavern.chunks[0]} chunk of {' and '.join(tavern.chunks)})" if tavern.chunks else ""
        lines += [f"{path}: {tavern.spec}{read_from}", f"name: {tavern.name}"]
        for key in TAVERN_FIELDS[1:]:
            value = getattr(tavern, key).strip()
            lines.append(f"{key}: " + (value.replace("\n", "\n    ") if value else "(empty)"))
        if tavern.extensions:
            lines.append(f"extensions (kept, not rendered): {', '.join(sorted(tavern.extensions))}")
        bio = render_bio(tavern.sheet(None, data.card_sheet), tavern.name, SheetSchema(data.sheet_schema))
        lines += ["", "as a sheet in group threads (data.cards; {{user}} becomes the thread's user):",
                  *(f"  {line}" for line in (bio or "(empty)").splitlines())]
    card = tavern.as_card(data.user_label) if tavern is not None else load_card(path, data.user_label)
    label = data.user_label
    lines += ["", "as the card of single-character mode (data.card):", f"  name: {card.name}", f"  source: {card.source}"]
    if card.description:
        lines.append(f"  persona: {card.description}")
    lines += [f"  {label}: {q}\n  {card.name}: {a}" for q, a in card.persona]
    lines.append(f"  traits: {', '.join(card.traits) or '(none)'}")
    if card.examples:
        lines.append("  example dialogue:")
        lines += [f"    {label if role == 'user' else card.name}: {text}" if role else "    ---"
                  for role, text in card.examples]
    print("\n".join(lines))
    return 0


def _config_help(args) -> int:
    for key, help, default in describe():
        print(f"{key} = {json.dumps(default)}\n    {help}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
