"""The loss without full logits equals the model's own, and packed examples do not see each other."""

import random

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, MistralConfig

from grouprp.loss import causal_lm_loss
from grouprp.packing import PackedRows, fill, pack
from grouprp.tokenize import IGNORE_INDEX

VOCAB = 600


def tiny_model(eight_bit: bool = False, tmp_path=None):
    torch.manual_seed(0)
    config = MistralConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                           attn_implementation="sdpa")
    model = AutoModelForCausalLM.from_config(config)
    if eight_bit:
        model.save_pretrained(tmp_path / "base")
        model = AutoModelForCausalLM.from_pretrained(tmp_path / "base", device_map={"": "cpu"},
                                                     quantization_config=BitsAndBytesConfig(load_in_8bit=True))
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # B starts at zero, which would leave A without a gradient to compare
            torch.nn.init.normal_(parameter, std=0.05)
    return model


def lora_gradients(model, loss) -> dict:
    model.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def batch(seed: int):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (2, 48), generator=generator)
    labels = ids.clone()
    labels[:, :12] = IGNORE_INDEX  # a prompt
    labels[1, 30:] = IGNORE_INDEX  # padding
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.mark.parametrize("eight_bit", [False, True])
def test_the_chunked_loss_and_its_gradients_equal_the_models_own(eight_bit, tmp_path):
    model = tiny_model(eight_bit, tmp_path)
    inputs = batch(1)
    items = torch.tensor(int((inputs["labels"][:, 1:] != IGNORE_INDEX).sum()) + 5)  # as if more were accumulated
    full = model(**inputs, num_items_in_batch=items).loss
    full_gradients = lora_gradients(model, full)
    chunked = causal_lm_loss(model, inputs, items, chunk=7)
    chunked_gradients = lora_gradients(model, chunked)
    assert abs(float(full) - float(chunked)) < 1e-4
    assert full_gradients.keys() == chunked_gradients.keys() and len(full_gradients) > 10
    for name, gradient in full_gradients.items():
        assert torch.allclose(gradient, chunked_gradients[name], atol=1e-4), name
    assert any(float(g.abs().sum()) > 0 for g in chunked_gradients.values())
    mean = causal_lm_loss(model, inputs)  # without num_items_in_batch: the mean over trained tokens
    assert abs(float(mean) - float(model(**inputs).loss)) < 1e-4


def example(seed: int, length: int):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (length,), generator=generator)
    ids[0] = 1  # a BOS, as every prepared example starts
    labels = ids.clone()
    labels[: length // 3] = IGNORE_INDEX
    labels[0] = IGNORE_INDEX
    return {"input_ids": ids.tolist(), "labels": labels.tolist()}


def summed_loss(model, inputs: dict, span: slice):
    """The summed next-token loss of the tokens in `span` of the (single) row."""
    logits = model(**{k: v for k, v in inputs.items() if k != "labels"}).logits[0, :-1].float()
    targets = inputs["labels"][0, 1:]
    losses = torch.nn.functional.cross_entropy(logits, targets.clamp(min=0), reduction="none")
    keep = torch.zeros_like(targets, dtype=torch.bool)
    keep[span.start - 1:span.stop - 1] = True
    return (losses * (keep & (targets != IGNORE_INDEX))).sum()


def test_examples_packed_in_a_row_have_the_loss_and_gradients_they_have_alone():
    model = tiny_model()
    parts = [example(1, 20), example(2, 33), example(3, 11)]
    row = {"input_ids": sum((p["input_ids"] for p in parts), []), "labels": sum((p["labels"] for p in parts), []),
           "position_ids": sum((list(range(len(p["input_ids"]))) for p in parts), [])}
    collate = PackedRows(pad_token_id=0)
    packed = collate([row, {**row, "input_ids": row["input_ids"][:40], "labels": row["labels"][:40],
                            "position_ids": row["position_ids"][:40]}])
    assert "attention_mask" not in packed and packed["position_ids"][1, 40:].tolist() == list(range(24))
    assert packed["use_cache"] is False
    first_row = {k: v[:1] if torch.is_tensor(v) else v for k, v in packed.items()}
    start = 0
    for part in parts:
        alone = PackedRows(0)([part])
        n = len(part["input_ids"])
        loss_alone = summed_loss(model, alone, slice(1, n))
        gradients_alone = lora_gradients(model, loss_alone)
        loss_packed = summed_loss(model, first_row, slice(start + 1, start + n))
        gradients_packed = lora_gradients(model, loss_packed)
        assert abs(float(loss_alone) - float(loss_packed)) < 1e-4
        for name, gradient in gradients_alone.items():
            assert torch.allclose(gradient, gradients_packed[name], atol=1e-4), name
        start += n
    # and without the restarting positions the examples would see each other: the check can fail
    flat = {**first_row, "position_ids": torch.arange(first_row["input_ids"].shape[1]).unsqueeze(0)}
    n0, n1 = len(parts[0]["input_ids"]), len(parts[1]["input_ids"])
    alone = summed_loss(model, PackedRows(0)([parts[1]]), slice(1, n1))
    assert abs(float(summed_loss(model, flat, slice(n0 + 1, n0 + n1))) - float(alone)) > 1e-3


def test_packing_places_every_example_once_within_the_row_length():
    rng = random.Random(0)
    lengths = [rng.randint(20, 900) for _ in range(500)]
    rows = pack(lengths, 1024)
    assert sorted(i for row in rows for i in row) == list(range(500))
    assert all(sum(lengths[i] for i in row) <= 1024 for row in rows)
    assert pack(lengths, 1024) == rows  # deterministic
    assert len(rows) <= sum(lengths) / 1024 * 1.1  # close to the fewest rows possible
    assert pack([600, 500, 400, 300, 200], 1000) == [[0, 2], [1, 3, 4]]  # best fit, longest first
    with pytest.raises(ValueError, match="does not fit a row of 100"):
        pack([101], 100)


def test_token_efficiency_counts_real_tokens_over_the_rows_room():
    unpacked, packed = fill([300] * 10, 1000, False), fill([300] * 10, 1000, True)
    assert (unpacked.rows, unpacked.efficiency) == (10, 0.3)
    assert (packed.rows, packed.efficiency) == (4, 0.75) and packed.per_step(2) == (5.0, 1500.0)
