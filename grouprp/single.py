"""Single-character mode: a visual-novel script -> one example per reply of the chosen character.

A reply is a maximal run of the character's lines inside one scene; its prompt carries the character card, the
scene's scenario and the chat history before it. Scenarios come from the scene's `# Scene:` line, else from the
configured provider (a fixed text, or an OpenAI-compatible endpoint whose answers are cached on disk).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Optional, Union

from grouprp.config import Config, DataConfig, ScenarioConfig
from grouprp.schema import DataError, Malformed
from grouprp.sources import input_files
from grouprp.sources.cards import load_card
from grouprp.sources.scripts import Line, Scene, read_scenes

log = logging.getLogger("grouprp")

HistoryLine = tuple[Optional[str], str]


@dataclass(frozen=True)
class Reply:
    """One training example of single-character mode, before rendering."""

    id: str
    scenario: str
    history: tuple[HistoryLine, ...]
    text: str
    where: str = ""

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "scenario": self.scenario, "history": self.history, "text": self.text,
                           "where": self.where}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "Reply":
        raw = json.loads(text)
        return cls(raw["id"], raw["scenario"], tuple(tuple(h) for h in raw["history"]), raw["text"], raw["where"])


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


def read_replies(cfg: Config) -> Iterator[Union[Reply, Malformed]]:
    """Every reply of the target character in every script file, with its scene's scenario."""
    card = load_card(cfg.data.card)
    if card.name.casefold() not in {n.casefold() for n in (cfg.data.character, *cfg.data.aliases)}:
        raise DataError(f"{cfg.data.card}: the card is for {card.name!r} but data.character is "
                        f"{cfg.data.character!r}; add {card.name!r} to data.aliases or fix the card")
    scenarios = ScenarioSource(cfg.data.scenario, cfg.data, Path(cfg.output_dir))
    for path in input_files(cfg.data):
        for scene in read_scenes(path):
            if isinstance(scene, Malformed):
                yield scene
                continue
            found = replies_in_scene(scene, cfg.data)
            if not found:
                continue
            scenario = scene.scenario or scenarios.describe(scene)
            for number, (history, text) in enumerate(found):
                yield Reply(f"{scene.id}#r{number}", scenario, history, text, scene.where)


SCENARIO_INSTRUCTION = (
    "You describe scenes from visual novels for a roleplay dataset. In two to four sentences, describe the setting "
    "of the scene below (where and when it takes place), the characters involved, and how {char} behaves in it. "
    "Write only the description.")


class ScenarioSource:
    """Scenarios for scenes without a `# Scene:` line: a fixed text, or a cached OpenAI-compatible endpoint."""

    def __init__(self, cfg: ScenarioConfig, data: DataConfig, output_dir: Path, backoff: float = 1.0):
        self.cfg = cfg
        self.data = data
        self.cache = Path(cfg.cache) if cfg.cache else output_dir / "scenario_cache"
        self.backoff = backoff
        self.requests = 0

    def describe(self, scene: Scene) -> str:
        if self.cfg.provider == "static":
            if not self.cfg.text.strip():
                raise DataError(f"{scene.where}: this scene has no `# Scene:` line and data.scenario.text is empty; "
                                "add the line, set data.scenario.text, or use data.scenario.provider=openai")
            return self.cfg.text.strip()
        transcript = "\n".join(f"{line.speaker}: {line.text}" if line.speaker else line.text for line in scene.lines)
        instruction = SCENARIO_INSTRUCTION.format(char=self.data.character)
        key = hashlib.sha256(json.dumps([self.cfg.model, instruction, transcript]).encode()).hexdigest()
        cached = self.cache / f"{key}.json"
        if cached.exists():
            return json.loads(cached.read_text(encoding="utf-8"))["scenario"]
        scenario = self._ask(instruction, transcript, scene.where)
        self.cache.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        tmp.write_text(json.dumps({"scenario": scenario, "scene": scene.where}, ensure_ascii=False), encoding="utf-8")
        tmp.replace(cached)
        return scenario

    def _ask(self, instruction: str, transcript: str, where: str) -> str:
        url = self.cfg.base_url.rstrip("/") + "/chat/completions"
        if not self.cfg.base_url:
            raise DataError("data.scenario.base_url: required with provider openai (e.g. http://127.0.0.1:8000/v1)")
        body = json.dumps({"model": self.cfg.model, "temperature": 0, "messages": [
            {"role": "system", "content": instruction}, {"role": "user", "content": transcript}]}).encode()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.cfg.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        problem = ""
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            self.requests += 1
            try:
                with urllib.request.urlopen(urllib.request.Request(url, body, headers),
                                            timeout=self.cfg.timeout) as response:
                    answer = json.loads(response.read().decode("utf-8"))
                return answer["choices"][0]["message"]["content"].strip()
            except urllib.error.HTTPError as exc:
                problem = f"HTTP {exc.code} {exc.reason}"
                if exc.code < 500 and exc.code != 429:  # our request is wrong: retrying will not help
                    break
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                problem = str(getattr(exc, "reason", exc))
            except (ValueError, KeyError, IndexError, TypeError):
                problem = "the answer is not an OpenAI chat completion"
                break
        raise DataError(f"data.scenario.base_url: asking {url} for the scenario of {where} failed ({problem}) "
                        f"after {self.requests} attempt(s); check the server and data.scenario, or give the scene "
                        "a `# Scene:` line")


class ReplyTokenizer:
    """The `datasets.map` worker for single-character mode: one example per reply, dropped when too long."""

    def __init__(self, cfg: DataConfig, tokenizer):
        from grouprp.formats import get_format

        self.cfg = cfg
        self.tokenizer = tokenizer
        self.format = get_format("alichat", bool(cfg.train_on_names), card=load_card(cfg.card),
                                 character=cfg.character, user_label=cfg.user_label)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        from grouprp.prepare import ExampleRows
        from grouprp.tokenize import encode_batch

        rows = ExampleRows()
        replies = [Reply.from_json(r) for r in batch["record"]]
        examples = [self.format.render(reply) for reply in replies]
        for index, reply, tokens in zip(batch["index"], replies, encode_batch(examples, self.tokenizer)):
            while len(tokens.input_ids) > self.cfg.sequence_len and reply.history:
                # too long: the oldest history goes first, the reply and the card always stay
                reply = replace(reply, history=reply.history[1:])
                tokens = encode_batch([self.format.render(reply)], self.tokenizer)[0]
            if len(tokens.input_ids) > self.cfg.sequence_len:
                rows.drop(index, "too_long", Counter())
            else:
                speakers = {self.cfg.character, *(speaker for speaker, _ in reply.history if speaker)}
                rows.example(index, reply.id, tokens, len(reply.history) + 1, len(speakers), Counter())
        return rows.columns
