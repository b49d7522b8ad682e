"""`grouprp chat RUN_DIR`: talk to a trained model in exactly the format it learned.

Group mode (lyra, chatml): the user plays one character of a scene; the model answers as a character it picks
(it writes the name, as in training), as a named one (`/as NAME`), or again (`/more`), which is what forum threads
look like. Single-character mode (alichat): the model plays the card's character in a scenario. Each model turn is
cleaned as people clean such replies by hand: a repeated `Name:` prefix goes, and a reply that starts writing the
user's character is cut there and marked as impersonation.

Commands: /as NAME, /more, /undo, /retry, /save FILE, /quit. In `--script` mode each input line is
{"text": "..."} (the user's next post, which the model then answers) or {"command": "/as NAME"}, and each model
turn is printed as one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

import yaml

from grouprp.config import ConfigError
from grouprp.filters import Kept, build_entry
from grouprp.inference import Run, Sampling, generate
from grouprp.quality import impersonation_cut, without_speaker_prefix
from grouprp.schema import DataError, Entry, Reply, Thread, Turn
from grouprp.sheets import SheetSchema, render_bio
from grouprp.sources import read_threads
from grouprp.sources.threads import Invalid, parse_sheet_source

COMMANDS = ("/as", "/more", "/undo", "/retry", "/save", "/quit")


@dataclass
class ModelTurn:
    """One generated turn, cleaned: who speaks, the text, and what the cleaning did."""

    character: str
    text: str
    impersonation: bool = False
    prefix_removed: bool = False

    def to_json(self) -> str:
        return json.dumps({"character": self.character, "text": self.text, "impersonation": self.impersonation,
                           "prefix_removed": self.prefix_removed}, ensure_ascii=False)


@dataclass
class Scene:
    """Who is in the conversation: the user's character, the others, their sheets (as written, for saving, and
    rendered), and the history so far."""

    user: str
    cast: list[str]
    sheets: dict[str, Any] = field(default_factory=dict)
    bios: dict[str, str] = field(default_factory=dict)
    turns: list[Turn] = field(default_factory=list)
    scenario: str = ""
    title: str = "grouprp chat"


class ChatSession:
    """A conversation with a run's model, rendered by the run's own format."""

    def __init__(self, run: Run, model, tokenizer, scene: Scene, sampling: Sampling) -> None:
        self.run, self.model, self.tokenizer, self.scene, self.sampling = run, model, tokenizer, scene, sampling
        self.format = run.format()
        self.single = run.cfg.data.mode == "single_character"
        self.last_speaker: Optional[str] = None  # who the last model turn was asked to be (None: model's choice)

    @property
    def characters(self) -> list[str]:
        """The characters the model may play."""
        if self.single:
            return [self.run.cfg.data.character]
        return [c for c in self.scene.cast if c != self.scene.user]

    def post(self, text: str) -> None:
        """The user's next post."""
        self.scene.turns.append(Turn(self.scene.user, text, "user"))

    def model_turn(self, speaker: Optional[str] = None, on_text: Optional[Callable[[str], None]] = None) -> ModelTurn:
        """Generate, clean and record the next model turn (as `speaker`, or as the model chooses)."""
        if speaker is not None:
            speaker = self.resolve(speaker)
        elif self.single:
            speaker = self.run.cfg.data.character
        self.last_speaker = speaker
        user_stops = [f"\n{name}:" for name in self._user_names()]  # the model began the user's next line
        generated = generate(self.model, self.tokenizer, self._prompt(speaker), self.format, self.sampling, on_text,
                             user_stops)
        turn = self._clean(generated.text, speaker, cut_short=generated.stopped_by in user_stops)
        if turn.text:
            self.scene.turns.append(Turn(turn.character, turn.text, "model"))
        return turn

    def resolve(self, name: str) -> str:
        """The character the model plays that `name` names (case aside); an error naming it otherwise."""
        found = next((c for c in self.characters if c.casefold() == name.strip().casefold()), None)
        if found is None:
            raise DataError(f"/as {name}: not in the scene; the model plays {', '.join(self.characters)}")
        return found

    def undo(self) -> Optional[Turn]:
        return self.scene.turns.pop() if self.scene.turns else None

    def retry(self, on_text: Optional[Callable[[str], None]] = None) -> ModelTurn:
        """A new sample for the last model turn, asked of the same character (or again of the model's choice)."""
        if not self.scene.turns or self.scene.turns[-1].role != "model":
            raise DataError("/retry: the last turn is not the model's")
        self.scene.turns.pop()
        return self.model_turn(self.last_speaker, on_text)

    def save(self, path: Union[str, Path]) -> Path:
        """Append the conversation to `path` as one thread of grouprp's native input format (a .jsonl line)."""
        path = Path(path)
        characters = [{"name": name, **({"sheet": self.scene.sheets[name]} if name in self.scene.sheets else {})}
                      for name in dict.fromkeys([self.scene.user, *self.scene.cast])]
        thread = {"id": f"chat-{time.strftime('%Y%m%d-%H%M%S')}", "title": self.scene.title, "user": self.scene.user,
                  "characters": characters,
                  "posts": [{"character": t.character, "text": t.text} for t in self.scene.turns]}
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(thread, ensure_ascii=False) + "\n")
        return path

    def _prompt(self, speaker: Optional[str]):
        """The conversation rendered up to the model's next words; the oldest turns give way when it is longer
        than the run's sequence_len leaves room for."""
        budget = self.run.cfg.data.sequence_len - self.sampling.max_new_tokens
        turns = list(self.scene.turns)
        while True:
            prompt = self._render(turns, speaker)
            if len(self.tokenizer(prompt.text, add_special_tokens=False)["input_ids"]) < budget or not turns:
                return prompt
            turns = turns[1:]

    def _render(self, turns: list[Turn], speaker: Optional[str]):
        if self.single:
            cfg = self.run.cfg.data
            history = tuple((cfg.user_label if t.role == "user" else t.character, t.text) for t in turns)
            history = history[-cfg.history_turns:] if cfg.history_turns else ()
            return self.format.prompt(Reply("chat", self.scene.scenario, history, ""))
        entry = Entry("chat", self.scene.user, tuple(turns), self.scene.bios, cast=tuple(self.scene.cast))
        return self.format.prompt(entry, speaker or "")

    def _user_names(self) -> list[str]:
        data = self.run.cfg.data
        return [n for n in ([data.user_label, data.user_name] if self.single else [self.scene.user]) if n]

    def _clean(self, raw: str, speaker: Optional[str], cut_short: bool = False) -> ModelTurn:
        """Who speaks (the model's `Name:` when it chose), without a repeated `Name:`, and cut where it starts
        writing the user's character: a `Name:` line of theirs, or a tail of the reply narrating or speaking for
        them (the detector of data.quality.impersonation); or already was, when generation stopped at the user's
        name."""
        text = raw.strip()
        character = speaker
        if character is None:  # the model wrote who speaks: `Name: text`
            name, colon, rest = text.partition(":")
            if colon and "\n" not in name and 0 < len(name.strip()) <= 40:
                character, text = name.strip(), rest.strip()
            else:
                character = self._next_character()
        text, prefix_removed = without_speaker_prefix(text, character)
        user_names = self._user_names()
        if character.casefold() in {n.casefold() for n in user_names}:
            cut = 0
        else:
            cut = impersonation_cut(text, user_names, self.characters)
        if cut is not None:
            text = text[:cut]
        return ModelTurn(character, text.strip(), impersonation=cut_short or cut is not None,
                         prefix_removed=prefix_removed)

    def _next_character(self) -> str:
        spoken = [t.character for t in self.scene.turns if t.role == "model"]
        waiting = [c for c in self.characters if c not in spoken[-1:]]
        return (waiting or self.characters)[0]


SCENE_FIELDS = {"user", "characters", "scenario", "title"}
CHARACTER_FIELDS = {"name", "player", "sheet"}


def single_character_scene(run: Run, scenario: Optional[str] = None) -> Scene:
    """A single-character run's scene: the user label talking to the character, in `scenario` or the config's."""
    data = run.cfg.data
    return Scene(user=data.user_label, cast=[data.character], scenario=str(scenario or data.scenario.text or ""))


def scene_from_file(path: Union[str, Path], run: Run) -> Scene:
    """A scene from a small YAML or JSON file: `user` and `characters` ({name, sheet}) as in a thread, and for
    single-character runs an optional `scenario`."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise DataError(f"--scene: cannot read {path} ({exc.strerror})") from None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"{path}: not a YAML or JSON scene ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: a scene is a mapping with user and characters")
    unknown = sorted(set(raw) - SCENE_FIELDS)
    if unknown:
        raise DataError(f"{path}: unknown field {unknown[0]!r}; a scene has {', '.join(sorted(SCENE_FIELDS))}")
    if run.cfg.data.mode == "single_character":
        return single_character_scene(run, raw.get("scenario"))
    user = raw.get("user")
    characters = raw.get("characters") or []
    if not isinstance(user, str) or not user.strip():
        raise DataError(f"{path}: `user` must name the character you play")
    if not isinstance(characters, list) or not characters:
        raise DataError(f"{path}: `characters` must list the characters of the scene ({{name, sheet}} each)")
    schema = SheetSchema(run.cfg.data.sheet_schema)
    cast, sheets = [], {}
    for index, item in enumerate(characters):
        where = f"{path}: characters[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
            raise DataError(f"{where}: each character needs a `name`")
        extra = sorted(set(item) - CHARACTER_FIELDS)
        if extra:
            raise DataError(f"{where}: unknown field {extra[0]!r}; a character has {', '.join(sorted(CHARACTER_FIELDS))}")
        try:
            sheet = parse_sheet_source(item.get("sheet"), "sheet")
        except Invalid as exc:
            raise DataError(f"{where}: {exc}") from None
        name = item["name"].strip()
        cast.append(name)
        if sheet is not None:
            sheets[name] = sheet
    if user.strip() not in cast:
        cast.insert(0, user.strip())
    bios = {name: render_bio(sheet, name, schema) for name, sheet in sheets.items()}
    return Scene(user=user.strip(), cast=cast, sheets=sheets, bios=bios, title=str(raw.get("title") or path.stem))


def scene_from_thread(spec: str, run: Run) -> Scene:
    """`FILE:ID`: a thread of a data file, cleaned as for training, whose posts become the history."""
    file, sep, thread_id = spec.rpartition(":")
    if not sep or not file or not thread_id:
        raise DataError(f"--thread {spec}: expected FILE:ID, e.g. data/sample/threads.jsonl:t01-ember-road-ambush")
    if run.cfg.data.mode == "single_character":
        raise DataError("--thread: a single-character run has no threads; use --scene for its scenario")
    data = replace(run.cfg.data, path=file, format=None, min_turns=1, min_characters=1, max_characters=10**6,
                   on_error="skip")
    found: Optional[Thread] = next((t for t in read_threads(data) if isinstance(t, Thread) and t.id == thread_id),
                                   None)
    if found is None:
        raise DataError(f"--thread {spec}: no thread with id {thread_id!r} in {file}")
    result = build_entry(found, data, SheetSchema(data.sheet_schema))
    if not isinstance(result, Kept):
        raise DataError(f"--thread {spec}: nothing of that thread is left after cleaning ({result.reason})")
    entry = result.entry
    sheets = {c.name: c.sheet for c in found.characters if c.sheet is not None}
    return Scene(user=entry.user, cast=entry.characters, sheets=sheets, bios=dict(entry.bios),
                 turns=list(entry.turns), title=found.title or found.id)


def parse_command(line: str) -> tuple[str, str]:
    """('post', text) for the user's words, or (command, argument) for a `/command`."""
    stripped = line.strip()
    if stripped.startswith("/"):
        command, _, argument = stripped.partition(" ")
        if command not in COMMANDS:
            raise DataError(f"{command}: unknown command; one of {', '.join(COMMANDS)}")
        return command, argument.strip()
    return "post", line


def run_script(session: ChatSession, lines: Iterable[str], where: str, out=sys.stdout) -> None:
    """Script mode: JSON lines in, one JSON line out per model turn."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise DataError(f"{where}:{number}: not a JSON line; expected {{\"text\": ...}} or "
                            "{\"command\": \"/as NAME\"}") from None
        if not isinstance(item, dict) or set(item) not in ({"text"}, {"command"}):
            raise DataError(f"{where}:{number}: expected {{\"text\": ...}} or {{\"command\": ...}}")
        try:
            for turn in act(session, *(("post", item["text"]) if "text" in item else parse_command(item["command"]))):
                print(turn.to_json(), file=out, flush=True)
        except (DataError, ConfigError) as exc:
            raise DataError(f"{where}:{number}: {exc}") from None


def act(session: ChatSession, command: str, argument: str,
        on_text: Optional[Callable[[str], None]] = None) -> list[ModelTurn]:
    """Carry out one post or command; the model turns it produced."""
    if command == "post":
        session.post(argument)
        return [session.model_turn(None, on_text)]
    if command == "/as":
        if not argument:
            raise DataError("/as: name the character, e.g. /as Corvin")
        return [session.model_turn(argument, on_text)]
    if command == "/more":
        return [session.model_turn(None, on_text)]
    if command == "/retry":
        return [session.retry(on_text)]
    if command == "/undo":
        session.undo()
        return []
    if command == "/save":
        if not argument:
            raise DataError("/save: name a file, e.g. /save my_session.jsonl")
        session.save(argument)
        return []
    return []
