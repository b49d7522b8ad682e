"""The bundled tokenizer: made by scripts/build_tokenizer.py from the sample data, with the prompt markers."""

import json
import subprocess
import sys

from conftest import ROOT, TOKENIZER


def test_markers_are_single_special_tokens(tokenizer):
    for marker in ("[INST]", "[/INST]", "<|im_start|>", "<|im_end|>"):
        ids = tokenizer(f"a{marker}b", add_special_tokens=False)["input_ids"]
        assert tokenizer.convert_tokens_to_ids(marker) in ids and len(ids) == 3, marker
    assert tokenizer.bos_token == "<s>" and tokenizer.eos_token == "</s>" and tokenizer.pad_token == "<pad>"
    assert tokenizer("Hi")["input_ids"][0] == tokenizer.bos_token_id  # like Mistral-Nemo: BOS by default


def test_the_script_rebuilds_the_committed_tokenizer(tmp_path):
    out = tmp_path / "tok"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_tokenizer.py"), "--out", str(out)], check=True,
                   capture_output=True)
    rebuilt = json.loads((out / "tokenizer.json").read_text())
    committed = json.loads((TOKENIZER / "tokenizer.json").read_text())
    assert rebuilt["model"]["vocab"] == committed["model"]["vocab"]
    assert rebuilt["model"]["merges"] == committed["model"]["merges"]
    assert rebuilt["added_tokens"] == committed["added_tokens"]
