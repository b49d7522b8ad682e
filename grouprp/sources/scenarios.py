"""Scenarios for single-character scenes that have no `# Scene:` line: a fixed text, or an OpenAI-compatible
chat endpoint whose answers are cached on disk, so a rerun asks nothing again."""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from grouprp.config import DataConfig, ScenarioConfig
from grouprp.schema import DataError
from grouprp.sources.scripts import Scene


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
