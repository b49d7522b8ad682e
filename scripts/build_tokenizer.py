"""Build the project's small tokenizer from its own sample data: `python scripts/build_tokenizer.py`.

A byte-level BPE (like Mistral-Nemo's) with the prompt markers as special tokens, so tests and the demo exercise
the same offset and special-token behaviour as the reference recipe's tokenizer without downloading anything.
The result is written to assets/tokenizer/ and committed; rerunning this script reproduces it exactly.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

ROOT = Path(__file__).resolve().parent.parent
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "[INST]", "[/INST]", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 4096
LATER_SAMPLES = ("sillytavern", "cards")
"""Sample folders added after the tokenizer was built: left out, so that it (and every figure measured with it)
stays as committed. A byte-level BPE encodes their text all the same."""


def sample_texts(data_dir: Path) -> list[str]:
    """Every piece of text in the sample data (but LATER_SAMPLES), in a fixed order."""
    texts = []
    for path in sorted(data_dir.rglob("*")):
        if path.relative_to(data_dir).parts[0] in LATER_SAMPLES:
            continue
        if path.suffix == ".jsonl":
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    texts.extend(_strings(json.loads(line)))
        elif path.suffix == ".csv":
            with open(path, encoding="utf-8", newline="") as handle:
                for row in csv.reader(handle):
                    texts.extend(row)
        elif path.suffix in (".txt", ".yaml", ".md"):
            texts.append(path.read_text(encoding="utf-8"))
    return texts


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)] + [str(k) for k in value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [str(value)]


def build(texts: list[str]) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    bos = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                             special_tokens=[("<s>", bos)])
    return tokenizer


def save(tokenizer: Tokenizer, out: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>",
                                   additional_special_tokens=["[INST]", "[/INST]", "<|im_start|>", "<|im_end|>"],
                                   clean_up_tokenization_spaces=False, model_max_length=32768)
    fast.save_pretrained(str(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "sample")
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "tokenizer")
    args = parser.parse_args()
    texts = sample_texts(args.data)
    save(build(texts), args.out)
    print(f"wrote a {VOCAB_SIZE}-token byte-level BPE from {len(texts)} sample texts to {args.out}")


if __name__ == "__main__":
    main()
