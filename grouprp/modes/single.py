"""Single-character mode: a visual-novel script -> one example per reply of the chosen character.

A reply is a maximal run of the character's lines inside one scene; its prompt carries the character card, the
scene's scenario and the chat history before it. An example longer than `sequence_len` loses its oldest history
lines until it fits; when the prompt and reply alone are too long it is dropped as too_long.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

from grouprp.clean import clean_name, strip_control_characters
from grouprp.config import Config, DataConfig
from grouprp.filters import Accounting
from grouprp.formats import get_format
from grouprp.modes.base import ExampleRow, Mode, Outcome
from grouprp.schema import DataError, Malformed, Reply
from grouprp.sources import SCRIPT_SUFFIXES, input_files
from grouprp.sources.cards import Card, load_card
from grouprp.sources.scenarios import ScenarioSource
from grouprp.sources.scripts import Line, Scene, read_scenes
from grouprp.tokenize import Encoder

log = logging.getLogger("grouprp")

HistoryLine = tuple[Optional[str], str]


class SingleCharacterMode(Mode):
    """The model plays one character of a script, one example per reply (alichat)."""

    unit = "replies"
    record_type = Reply
    file_suffixes = SCRIPT_SUFFIXES
    without_tokenizer = "no tokenizer, so over-long histories are shown untrimmed (pass --tokenizer PATH to trim)"

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        d = cfg.data
        self.card = _clean_card(load_card(d.card, d.user_label))
        if self.card.name.casefold() not in {n.casefold() for n in (d.character, *d.aliases)}:
            raise DataError(f"{d.card}: the card is for {self.card.name!r} but data.character is {d.character!r}; "
                            f"add {self.card.name!r} to data.aliases or fix the card")
        self.format = get_format(d.template, bool(d.train_on_names), card=self.card, character=d.character,
                                 user_label=d.user_label)

    def describe(self) -> str:
        return f"single-character roleplay: every reply of {self.data.character} in visual-novel scripts"

    def sample_prompt(self) -> str:
        scenario = self.data.scenario.text or "A quiet afternoon."
        history = ((self.data.user_label, "Hello. Have we met?"),)
        return self.format.prompt(Reply("sample", scenario, history, "")).text

    def read(self, accounting: Accounting) -> Iterator[Union[Reply, Malformed]]:
        """Every reply of the target character in every script file, with its scene's scenario. Control
        characters are taken out of lines (counted under posts_changed), empty lines left out (posts_removed);
        a script without a line of the character is reported, and no such line anywhere is an error."""
        scenarios = ScenarioSource(self.data.scenario, self.data, Path(self.cfg.output_dir))
        speakers: Counter = Counter()
        replies = 0
        for path in input_files(self.data, self.file_suffixes):
            in_file = 0
            for scene in read_scenes(path):
                if isinstance(scene, Malformed):
                    yield scene
                    continue
                scene = _usable_lines(scene, accounting)
                speakers.update(line.speaker for line in scene.lines if line.speaker)
                found = replies_in_scene(scene, self.data)
                if not found:
                    continue
                scenario = scene.scenario or scenarios.describe(scene)
                for number, (history, text) in enumerate(found):
                    yield Reply(f"{scene.id}#r{number}", scenario, history, text, scene.where)
                in_file += len(found)
            if not in_file:
                accounting.left_out["scripts_without_character"] += 1
                log.warning("%s: no line of %s in this script", path, self._names())
            replies += in_file
        if not replies:
            common = ", ".join(name for name, _ in speakers.most_common(8)) or "none"
            raise DataError(f"data.character: no line of {self._names()} in {self.data.path} (speakers found: "
                            f"{common}); check data.character and data.aliases")

    def _names(self) -> str:
        return " / ".join(map(repr, (self.data.character, *self.data.aliases)))

    def build(self, replies: Sequence[Reply], encoder: Optional[Encoder]) -> list[Outcome]:
        examples = [self.format.render(reply) for reply in replies]
        tokens = encoder.encode(examples) if encoder else [None] * len(replies)
        outcomes = []
        for reply, example, reply_tokens in zip(replies, examples, tokens):
            while reply_tokens is not None and len(reply_tokens) > self.data.sequence_len and reply.history:
                # too long: the oldest history goes first, the reply and the card always stay
                reply = replace(reply, history=reply.history[1:])
                example = self.format.render(reply)
                reply_tokens = encoder.encode([example])[0]
            if reply_tokens is not None and len(reply_tokens) > self.data.sequence_len:
                outcomes.append(Outcome([], "too_long"))
                continue
            speakers = {self.data.character, *(speaker for speaker, _ in reply.history if speaker)}
            outcomes.append(Outcome([ExampleRow(reply.id, example, reply_tokens, len(reply.history) + 1,
                                                len(speakers), self.data.user_label)]))
        return outcomes


def _clean_card(card: Card) -> Card:
    text = clean_name  # what a card's text needs too: no control characters, no outer whitespace
    return Card(clean_name(card.name), text(card.source), tuple((text(q), text(a)) for q, a in card.persona),
                tuple(text(t) for t in card.traits), text(card.description),
                tuple((role, text(line)) for role, line in card.examples))


def _usable_lines(scene: Scene, accounting: Accounting) -> Scene:
    """The scene without control characters in its lines (counted) and without empty spoken lines (counted)."""
    lines = []
    for line in scene.lines:
        text, controls = strip_control_characters(line.text)
        text = text.replace("\u2028", "\n").replace("\u2029", "\n").strip()  # a line break inside the line
        if not text:
            accounting.posts_removed["empty"] += 1
            continue
        if controls:
            accounting.posts_changed["control_characters"] += 1
        lines.append(Line(clean_name(line.speaker) if line.speaker else None, text))
    return replace(scene, lines=tuple(lines))


def replies_in_scene(scene: Scene, cfg: DataConfig) -> list[tuple[tuple[HistoryLine, ...], str]]:
    """(history, reply text) for every maximal run of the target character's lines in a scene."""
    lines = [Line(_label(line.speaker, cfg), line.text) for line in scene.lines]
    if not cfg.include_narration:
        lines = [line for line in lines if line.speaker is not None]  # before merging: it separates nothing
    merged: list[Line] = []
    for line in lines:
        if merged and line.speaker is not None and merged[-1].speaker == line.speaker:
            merged[-1] = Line(line.speaker, f"{merged[-1].text} {line.text}")
        else:
            merged.append(line)
    out = []
    for index, line in enumerate(merged):
        if line.speaker == cfg.character:
            start = max(0, index - cfg.history_turns)
            history = tuple((h.speaker, h.text) for h in merged[start:index]) if cfg.history_turns else ()
            out.append((history, line.text))
    return out


def _label(speaker: Optional[str], cfg: DataConfig) -> Optional[str]:
    """The target's aliases become its name; the protagonist becomes the user label."""
    if speaker is None:
        return None
    folded = speaker.casefold()
    if folded in {n.casefold() for n in (cfg.character, *cfg.aliases)}:
        return cfg.character
    if cfg.user_name and folded == cfg.user_name.casefold():
        return cfg.user_label
    return speaker
