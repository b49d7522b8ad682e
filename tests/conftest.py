"""Shared fixtures. Nothing is downloaded: the hub is off for the whole session."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "assets" / "tokenizer"


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOKENIZER))


@pytest.fixture(scope="session")
def nemo_tokenizer_path(tmp_path_factory) -> Path:
    """Mistral-Nemo's real tokenizer (tekken, 131,072 tokens), from the mistral-common package, saved as a Hugging
    Face tokenizer. On it [INST] and [/INST] are control tokens; <|im_start|> and <|im_end|> are plain text."""
    import mistral_common
    from transformers.integrations.mistral.tokenizer import convert_tekken_tokenizer

    tekken = Path(mistral_common.__file__).parent / "data" / "tekken_240718.json"
    path = tmp_path_factory.mktemp("nemo") / "tokenizer"
    convert_tekken_tokenizer(str(tekken)).save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def nemo_tokenizer(nemo_tokenizer_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(nemo_tokenizer_path))


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def make_thread(thread_id="t1", speakers=("Ann", "Bo", "Ann", "Cy", "Ann", "Bo"), **extra):
    """A thread whose posts are written by `speakers` in order, each post saying who and which turn it is."""
    posts = [{"character": c, "text": f"{c} says line {i}."} for i, c in enumerate(speakers)]
    return {"id": thread_id, "posts": posts, **extra}
