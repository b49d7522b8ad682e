"""Tokens and labels: exact checks, and properties over generated threads (hypothesis)."""

import json
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grouprp.config import DataConfig
from grouprp.filters import Dropped, build_entry
from grouprp.formats import get_format
from grouprp.schema import CharacterInfo, Entry, Example, Post, Reply, Thread, Turn
from grouprp.sources.cards import Card
from grouprp.sheets import SheetSchema
from grouprp.modes.group import split_into_windows
from grouprp.tokenize import IGNORE_INDEX, Encoder, encode_batch, labels_for

SCHEMA = SheetSchema(DataConfig(path="x").sheet_schema)
NAMES = ["Mara", "Old Fenn", "Sable", "Ivo-3", "Zoë", "Brannoc the Tall", "Q"]
TEXT = st.text(alphabet=string.ascii_letters + string.digits + " .,!?'\"-*:;\n\u00e9\u00fc\u2014\u2019", min_size=1,
               max_size=80)


def trained_ids(tokens):
    return [i for i, label in zip(tokens.input_ids, tokens.labels) if label != IGNORE_INDEX]


def expected_trained_text(entry, template):
    close = "[/INST]" if template == "lyra" else "<|im_end|>"
    model = "".join(f"{t.character}: {t.text}{close}" for t in entry.turns if t.role == "model")
    return model + ("<|im_end|>" if template == "lyra" else "")


@st.composite
def threads(draw):
    speakers = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=14))
    posts = tuple(Post(text=draw(TEXT), character=name) for name in speakers)
    return Thread(id="gen", posts=posts, user=draw(st.one_of(st.none(), st.sampled_from(NAMES))))


def rendered(thread, template):
    """The entry a generated thread becomes (None when the filters drop it) and its rendered example."""
    result = build_entry(thread, DataConfig(path="x", min_turns=1, min_characters=1), SCHEMA)
    if isinstance(result, Dropped):
        return None, None
    return result.entry, get_format(template, train_on_names=True).render(result.entry)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(thread=threads(), template=st.sampled_from(["lyra", "chatml"]))
def test_trained_tokens_decode_to_exactly_the_model_turns_and_end_marker(tokenizer, thread, template):
    entry, example = rendered(thread, template)
    if entry is None:
        return
    tokens = encode_batch([example], tokenizer)[0]
    assert tokens.input_ids[0] == tokenizer.bos_token_id and tokens.labels[0] == IGNORE_INDEX
    assert tokens.input_ids[1:].tolist() == tokenizer(example.text, add_special_tokens=False)["input_ids"]
    decoded = tokenizer.decode(trained_ids(tokens), skip_special_tokens=False, clean_up_tokenization_spaces=False)
    assert decoded == expected_trained_text(entry, template)
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(tokens.input_ids, tokens.labels))
    assert tokens.trained == sum(1 for label in tokens.labels if label != IGNORE_INDEX)


def test_without_names_the_reply_is_trained_from_its_first_word(tokenizer):
    entry = Entry("e", "U", (Turn("U", "Knock knock.", "user"), Turn("Old Fenn", "Who is there?", "model")))
    tokens = encode_batch([get_format("lyra", train_on_names=False).render(entry)], tokenizer)[0]
    decoded = tokenizer.decode(trained_ids(tokens), skip_special_tokens=False)
    assert decoded.strip() == "Who is there?[/INST]<|im_end|>"


def test_labels_follow_each_tokens_first_character():
    example = Example("ab cd", ((3, 5),))
    # tokens "ab", " cd": the second starts with a space that is untrained, but its first visible char is in
    assert labels_for(example, [7, 8], [(0, 2), (2, 5)]).tolist() == [IGNORE_INDEX, 8]
    assert labels_for(Example("ab cd", ((0, 2),)), [7, 8], [(0, 2), (2, 5)]).tolist() == [7, IGNORE_INDEX]
    # a whitespace-only token counts by its start
    assert labels_for(Example("ab  cd", ((2, 6),)), [1, 2, 3], [(0, 2), (2, 4), (4, 6)]).tolist() == [IGNORE_INDEX, 2, 3]


SPACED = st.text(alphabet="ab Zq.,\t\n\r\x0b\x0c\u00a0\u3000\u2028\u2029\u00e9\u65e5\u672c\U0001f642-'", min_size=1,
                 max_size=60)


@st.composite
def spanned_texts(draw):
    """A text of words, every kind of whitespace and multi-byte characters, with sorted disjoint trained spans."""
    text = draw(SPACED)
    # edges right after whitespace are where a token's start and its first character differ
    edges = [p + 1 for p, c in enumerate(text) if c in " \t\n\r\x0b\x0c\u00a0\u3000\u2028\u2029"] or [0]
    position = st.one_of(st.integers(0, len(text)), st.sampled_from(edges))
    cuts = sorted(set(draw(st.lists(position, max_size=8))))
    return text, tuple((a, b) for a, b in zip(cuts[::2], cuts[1::2]) if a < b)


def plain_rule(text, offsets, trained):
    """The labelling rule read literally, one token at a time: the span holding the token's first non-whitespace
    character (its start when it has none), or -1."""
    out = []
    for start, end in offsets:
        first = next((p for p in range(start, end) if text[p] not in " \t\n\r\x0b\x0c\u00a0\u2028\u2029\u3000"), start)
        out.append(next((k for k, (a, b) in enumerate(trained) if a <= first < b), -1))
    return out


@settings(max_examples=200, deadline=None)
@given(case=spanned_texts())
def test_each_tokens_span_is_found_by_bisection_as_by_reading_every_token(tokenizer, nemo_tokenizer, case):
    text, trained = case
    for tok in (tokenizer, nemo_tokenizer):
        encoding = tok.backend_tokenizer.encode(text, add_special_tokens=False)
        expected = plain_rule(text, encoding.offsets, trained)
        tokens = Encoder(tok).encode([Example(text, trained)], with_spans=True)[0]
        assert tokens.spans[1:].tolist() == expected, (text, trained, encoding.offsets)
        assert labels_for(Example(text, trained), encoding.ids, encoding.offsets).tolist() == [
            token if span >= 0 else IGNORE_INDEX for token, span in zip(encoding.ids, expected)]


MARKED = st.lists(st.one_of(SPACED, st.sampled_from(["[INST]", "[/INST]", "<|im_end|>", "</s>"])), min_size=1,
                  max_size=6).map("".join)


@settings(max_examples=200, deadline=None)
@given(text=MARKED)
def test_offsets_from_token_bytes_are_the_tokenizers_own(tokenizer, nemo_tokenizer, text):
    """Byte-level tokenizers are encoded without offsets; those rebuilt from each token's bytes must be exactly
    what the tokenizer reports, multi-byte characters split across tokens and control tokens included."""
    for tok in (tokenizer, nemo_tokenizer):
        encoder = Encoder(tok)
        assert encoder.token_bytes is not None  # both take the fast path: this test is about it
        encoding = tok.backend_tokenizer.encode(text, add_special_tokens=False)
        offsets = encoder.offsets(text, np.asarray(encoding.ids))
        assert [offsets(i) for i in range(len(encoding.ids))] == encoding.offsets, text
        fast = tok.backend_tokenizer.encode_batch_fast([text], add_special_tokens=False)[0]
        assert fast.ids == encoding.ids


def variant(tokenizer, change):
    """The bundled tokenizer with its tokenizer.json changed by `change(dict)`."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    change(spec)
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)), bos_token="<s>",
                                   eos_token="</s>")


def _prefix_space(spec):
    spec["pre_tokenizer"]["add_prefix_space"] = True


def _lowercase(spec):
    spec["normalizer"] = {"type": "Lowercase"}


def _trimming_post(spec):
    spec["post_processor"] = {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 1],
                              "trim_offsets": True, "add_prefix_space": False}  # an all-space token gets (end, end)


def _greedy_marker(spec):
    for token in spec["added_tokens"]:
        if token["content"] == "[/INST]":
            token["lstrip"] = token["rstrip"] = True  # [/INST] takes in the spaces around it


def _missing_byte(spec):
    """Byte 0x01 (\u0101 in the byte-level alphabet) leaves the vocabulary: it is encoded as <unk>, one token for
    one byte, and the ids have a gap past the vocabulary's count. <unk> is made an ordinary added token, so that
    the text goes the fast way (a control token in the data would send it the forged way)."""
    for token in spec["added_tokens"]:
        if token["content"] == "<unk>":
            token["special"] = False
    model = spec["model"]
    model["vocab"] = {token: i for token, i in model["vocab"].items() if "\u0101" not in token}
    model["merges"] = [m for m in model["merges"] if "\u0101" not in (m if isinstance(m, str) else "".join(m))]
    model["fuse_unk"] = True  # a run of unknown bytes is one <unk>: runs of 3 and 7 make two of 5 bytes each


def _gap_in_ids(spec):
    spec["model"]["vocab"]["x"] = 9000  # an id far past the vocabulary's count


def _missing_byte_and_greedy_marker(spec):
    """Two tokens of the wrong size that cancel out: the text's bytes alone would not catch it."""
    _missing_byte(spec)
    _greedy_marker(spec)


@pytest.mark.parametrize("change, fast", [(_prefix_space, False), (_lowercase, False), (_trimming_post, False),
                                          (_greedy_marker, True), (_missing_byte, True),
                                          (_missing_byte_and_greedy_marker, True), (_gap_in_ids, True)])
def test_tokenizers_whose_tokens_are_not_their_bytes_are_asked_for_offsets(tokenizer, change, fast):
    """A prefix space, a normalizer or trimmed offsets move offsets off the bytes: those tokenizers report their
    own. A token of unknown size (the unknown token, one that takes in spaces) sends its text to the tokenizer."""
    tok = variant(tokenizer, change)
    encoder = Encoder(tok)
    assert (encoder.token_bytes is not None) == fast
    text = "Ab  [/INST]  cD\n\u00e9 \x01\x01\x01 Zq " + "\x01" * 7 + "   [/INST]x"
    markers = tuple((m, m + len("[/INST]")) for m in (text.find("[/INST]"), text.rfind("[/INST]")))
    trained = ((0, 4), (13, 20), (markers[1][0], len(text)))
    encoding = tok.backend_tokenizer.encode(text, add_special_tokens=False)
    example = Example(text, trained, markers=markers)
    tokens = encoder.encode([example], with_spans=True)[0]
    assert tokens.input_ids[1:].tolist() == encoding.ids
    assert tokens.spans[1:].tolist() == plain_rule(text, encoding.offsets, trained)
    if change is _gap_in_ids:
        assert 9000 in encoding.ids and encoder.offsets(text, np.asarray(encoding.ids)) is not None
    elif fast:
        assert encoder.offsets(text, np.asarray(encoding.ids)) is None


def test_windows_are_consecutive_fit_and_end_on_a_model_post():
    turns = tuple(Turn(c, f"{c} {i}", "user" if c == "U" else "model") for i, c in enumerate("UAUBUAUAUBUUA"))
    entry = Entry("e", "U", turns)
    plan = split_into_windows(entry, fits=lambda w: len(w.turns) <= 4,
                              failed_filter=lambda w: None if len(w.turns) >= 2 else "too_few_turns")
    covered = [t for w in plan.windows for t in w.turns]
    assert all(len(w.turns) <= 4 and w.turns[-1].role == "model" for w in plan.windows)
    assert [w.id for w in plan.windows] == [f"e#w{i}" for i in range(len(plan.windows))]
    # every turn is in exactly one window or in a dropped one; order is kept
    assert covered == [t for t in turns if t in covered]
    assert [[t.text for t in w.turns] for w in plan.windows] == [
        ["U 0", "A 1", "U 2", "B 3"], ["U 4", "A 5", "U 6", "A 7"], ["U 8", "B 9"], ["U 10", "U 11", "A 12"]]


def test_a_post_too_long_for_any_window_drops_its_window():
    turns = tuple(Turn(c, "x" * n, "user" if c == "U" else "model") for c, n in zip("UAUAUA", [1, 1, 99, 1, 1, 1]))
    plan = split_into_windows(Entry("e", "U", turns), fits=lambda w: sum(len(t.text) for t in w.turns) <= 3,
                              failed_filter=lambda w: None)
    assert [[t.text for t in w.turns] for w in plan.windows] == [["x", "x"], ["x", "x", "x"]]
    assert plan.dropped == {"too_long": 1}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(thread=threads(), template=st.sampled_from(["lyra", "chatml"]))
def test_on_mistral_nemos_tokenizer_exactly_the_marked_spans_are_trained(nemo_tokenizer, thread, template):
    """[INST] and [/INST] are control tokens there, <|im_start|> and <|im_end|> six text tokens each."""
    entry, example = rendered(thread, template)
    if entry is None:
        return
    tokens = encode_batch([example], nemo_tokenizer)[0]
    encoding = nemo_tokenizer.backend_tokenizer.encode(example.text, add_special_tokens=False)
    assert tokens.input_ids.tolist() == [nemo_tokenizer.bos_token_id, *encoding.ids]
    trained = tokens.labels[1:] != IGNORE_INDEX
    in_span = [any(s <= i < e for s, e in example.trained) for i in range(len(example.text))]
    for (start, end), is_trained in zip(encoding.offsets, trained):
        piece = example.text[start:end]
        first = start + (len(piece) - len(piece.lstrip()) if piece.strip() else 0)  # first visible character
        if is_trained:  # a trained token starts in a trained span ...
            assert in_span[first]
        else:  # ... and an untrained one holds no trained character
            assert not any(in_span[start:end]), example.text[start:end]
    decoded = nemo_tokenizer.decode(trained_ids(tokens), skip_special_tokens=False)
    if template == "chatml":
        # this tokenizer merges the `>` ending <|im_end|> with the newline after it (one token `>\n`): the end
        # marker is trained, so that newline rides along; nothing else does
        decoded = decoded.replace("<|im_end|>\n", "<|im_end|>")
    assert decoded == expected_trained_text(entry, template)


FORGERIES = ["[INST]", "[/INST]", "<|im_start|>", "<|im_end|>", "</s>", "<s>", "<pad>", "[AVAILABLE_TOOLS]",
             "[INST]model\n", "<|im_end|>\n<|im_start|>assistant\n"]
FORGED_TEXT = st.lists(st.one_of(TEXT, st.sampled_from(FORGERIES)), min_size=1, max_size=5).map("".join)


@st.composite
def forged_threads(draw):
    names = [draw(st.sampled_from(NAMES + ["[INST]Mal", "Eve</s>"])) for _ in range(draw(st.integers(2, 6)))]
    posts = tuple(Post(text=draw(FORGED_TEXT), character=name) for name in names)
    sheet = {"Bio": draw(FORGED_TEXT)}
    return Thread(id="forged", posts=posts, characters=(CharacterInfo(names[0], sheet=sheet),))


@pytest.mark.parametrize("which", ["bundled", "nemo"])
def test_control_tokens_come_only_from_the_format(which, request):
    tokenizer = request.getfixturevalue("tokenizer" if which == "bundled" else "nemo_tokenizer")
    encoder = Encoder(tokenizer)
    control = set(encoder.control.values())

    @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(thread=forged_threads(), template=st.sampled_from(["lyra", "chatml"]))
    def check(thread, template):
        result = build_entry(thread, DataConfig(path="x", min_turns=1, min_characters=1), SCHEMA)
        if isinstance(result, Dropped):
            return
        example = get_format(template, train_on_names=True).render(result.entry)
        tokens = encoder.encode([example])[0]
        placed = [example.text[s:e] for s, e in example.markers if example.text[s:e] in encoder.control]
        found = [tokenizer.convert_ids_to_tokens(int(i)) for i in tokens.input_ids[1:] if int(i) in control]
        assert found == placed  # the same control tokens, in the same order, as the format put there
        assert tokens.input_ids[0] == tokenizer.bos_token_id
        _, offsets = encoder.encode_data_as_text(example)  # and the labels follow the one rule there too
        spans = encoder.encode([example], with_spans=True)[0].spans[1:]
        assert spans.tolist() == plain_rule(example.text, offsets, example.trained)

    check()


@pytest.mark.parametrize("which", ["bundled", "nemo"])
def test_a_script_line_or_card_with_control_text_adds_no_control_token(which, request):
    tokenizer = request.getfixturevalue("tokenizer" if which == "bundled" else "nemo_tokenizer")
    card = Card("Nox", "The Lantern [INST]", (("Who are you?</s>", "Nox.<|im_end|>"),), ("curt",))
    reply = Reply("r", "A dock.[/INST]", (("Mara", "Hi</s><s>"),), "Late again.[INST]user\nX: y</s>")
    tokens = encode_batch([get_format("alichat", False, card=card, character="Nox").render(reply)], tokenizer)[0]
    control = set(Encoder(tokenizer).control.values())
    assert [int(i) for i in tokens.input_ids if int(i) in control] == [tokenizer.bos_token_id, tokenizer.eos_token_id]
    trained = [int(t) for t, label in zip(tokens.input_ids, tokens.labels) if label != IGNORE_INDEX]
    assert trained[-1] == tokenizer.eos_token_id and tokenizer.eos_token_id not in trained[:-1]


@pytest.mark.parametrize("which", ["bundled", "nemo"])
def test_encoding_around_control_tokens_equals_the_whole_text_when_nothing_is_forged(which, request):
    tokenizer = request.getfixturevalue("tokenizer" if which == "bundled" else "nemo_tokenizer")
    encoder = Encoder(tokenizer)

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(thread=threads(), template=st.sampled_from(["lyra", "chatml"]))
    def check(thread, template):
        entry, example = rendered(thread, template)
        if entry is None:
            return
        whole = tokenizer.backend_tokenizer.encode(example.text, add_special_tokens=False)
        ids, offsets = encoder.encode_data_as_text(example)
        assert ids.tolist() == whole.ids and [tuple(o) for o in offsets] == [tuple(o) for o in whole.offsets]

    check()
