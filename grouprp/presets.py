"""`grouprp export-preset RUN_DIR --to sillytavern --out DIR`: SillyTavern presets that reproduce the trained
group format, so a front-end sends the model exactly what it learned.

SillyTavern's instruct mode builds a prompt from a story string wrapped in a prefix and suffix, then one message
per chat line: its sequence, `Name: ` (names_behavior `always`), the text and a suffix, then the cue for the next
speaker (`output_sequence` + `Name:`). With `wrap` off and the block markers inside the sequences, that is grouprp's
`[INST]role\\n{name}: {text}[/INST]` exactly. The trained system prompt becomes the system prompt preset and the
story string; each character's bio comes from the group's "join character cards" prefix and suffix, which are
group settings rather than presets: `group-settings.json` and the README beside the presets give them.
"""

from __future__ import annotations

import json
from pathlib import Path

from grouprp.formats.group import SYSTEM_INTRO, GroupFormat
from grouprp.schema import DataError

JOIN_PREFIX = "{{char}}\nCharacter Bio: "
JOIN_SUFFIX = "\n---"
STORY_STRING = ("{{#if system}}{{system}}\n{{/if}}[Human User]\n{{user}}\n{{#if persona}}Character Bio: {{persona}}\n"
                "{{/if}}[Involved Characters]\n{{#if description}}{{description}}\n{{/if}}The roleplay begins now.")


def sillytavern_presets(fmt, name: str) -> dict[str, dict]:
    """The instruct, context and system prompt presets for a group format, and the group settings they need."""
    if not isinstance(fmt, GroupFormat):
        raise DataError(f"export-preset: the {fmt.name} format has no SillyTavern equivalent yet; presets exist for "
                        "the group formats (lyra, chatml)")

    def sequence(role: str) -> str:
        return f"{fmt.open}{fmt.role_names[role]}\n"

    suffix = fmt.close + fmt.between
    # the closing marker stops a reply too: SillyTavern appends the suffix itself when it sends the reply back
    stops = list(dict.fromkeys([fmt.close, *fmt.stop_strings]))
    instruct = {
        "name": name,
        "input_sequence": sequence("user"), "input_suffix": suffix,
        "output_sequence": sequence("model"), "output_suffix": suffix,
        "system_sequence": sequence("system"), "system_suffix": suffix,
        "first_input_sequence": "", "last_input_sequence": "", "first_output_sequence": "",
        "last_output_sequence": "", "last_system_sequence": "",
        "story_string_prefix": sequence("system"), "story_string_suffix": suffix,
        "stop_sequence": "\n".join(stops), "sequences_as_stop_strings": False,
        "wrap": False, "macro": True, "names_behavior": "always", "system_same_as_user": False,
        "user_alignment_message": "", "skip_examples": False, "activation_regex": "",
    }
    context = {
        "name": name, "story_string": STORY_STRING, "example_separator": "", "chat_start": "",
        "use_stop_strings": False, "names_as_stop_strings": True, "story_string_position": 0,
        "story_string_depth": 1, "story_string_role": 0, "always_force_name2": True, "trim_sentences": False,
        "single_line": False,
    }
    sysprompt = {"name": name, "content": SYSTEM_INTRO.format(user="{{user}}"), "post_history": ""}
    group = {"generation_mode": 1, "generation_mode_join_prefix": JOIN_PREFIX,
             "generation_mode_join_suffix": JOIN_SUFFIX}
    return {"instruct": instruct, "context": context, "sysprompt": sysprompt, "group": group}


def export_sillytavern(fmt, name: str, out: Path) -> list[Path]:
    """Write the presets one file each, the master-import file, the group settings and how to use them."""
    presets = sillytavern_presets(fmt, name)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for section in ("instruct", "context", "sysprompt"):
        written.append(_write(out / f"{section}.json", presets[section]))
    written.append(_write(out / "master-import.json", {k: presets[k] for k in ("instruct", "context", "sysprompt")}))
    written.append(_write(out / "group-settings.json", presets["group"]))
    guide = out / "README.md"
    guide.write_text(USAGE.format(name=name, prefix=json.dumps(JOIN_PREFIX), suffix=json.dumps(JOIN_SUFFIX),
                                  stops=", ".join(f"`{s}`" for s in presets["instruct"]["stop_sequence"].split("\n"))))
    return [*written, guide]


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return path


USAGE = """# SillyTavern presets for {name}

1. In SillyTavern, AI Response Formatting: "Master Import" `master-import.json` (or import `instruct.json`,
   `context.json` and `sysprompt.json` one by one), then select `{name}` as the Context Template, the Instruct
   Template (instruct mode on) and the System Prompt.
2. In the group chat's settings: Group generation handling mode "Join character cards", with the join prefix
   {prefix} and suffix {suffix} (`group-settings.json`).
3. Each character's Description is its sheet as grouprp renders it; your persona's description is yours.

Stop strings: {stops}. Sampler: low temperature (0.5; Mistral recommends 0.3 for Nemo), min_p 0.05.
"""
