"""Group formats (docs/format.md, "lyra" and "chatml"): exact rendered text and trained spans."""

from grouprp.config import DataConfig
from grouprp.filters import Dropped, build_entry
from grouprp.formats import get_format
from grouprp.schema import CharacterInfo, Entry, Post, Thread, Turn
from grouprp.sheets import SheetSchema

CFG = DataConfig(path="x")
SCHEMA = SheetSchema(CFG.sheet_schema)

TAVERN = Entry(
    id="tavern",
    user="Mara Quill",
    turns=(
        Turn("Mara Quill", "Mara pushed the tavern door open.", "user"),
        Turn("Old Fenn", "Fenn looked up from the bar.", "model"),
        Turn("Sable", "Sable did not look up at all.", "model"),
    ),
    bios={"Mara Quill": "**Character Name**: Mara Quill", "Sable": "**Character Name**: Sable\n**Age**: 27"},
)

SYSTEM = (
    "You are involved in a multi-character internet-style roleplaying session with a human user, who is playing "
    "as Mara Quill. Do not generate dialogue for the user's character, Mara Quill. Focus on the other characters.\n"
    "[Human User]\n"
    "Mara Quill\n"
    "Character Bio: **Character Name**: Mara Quill\n"
    "[Involved Characters]\n"
    "Old Fenn\n"
    "---\n"
    "Sable\n"
    "Character Bio: **Character Name**: Sable\n**Age**: 27\n"
    "---\n"
    "The roleplay begins now."
)


def test_lyra_text_is_exact():
    example = get_format("lyra", train_on_names=True).render(TAVERN)
    assert example.text == (
        f"[INST]system\n{SYSTEM}[/INST]"
        "[INST]user\nMara Quill: Mara pushed the tavern door open.[/INST]"
        "[INST]model\nOld Fenn: Fenn looked up from the bar.[/INST]"
        "[INST]model\nSable: Sable did not look up at all.[/INST]"
        "<|im_end|>"
    )


def test_lyra_trains_model_blocks_with_their_close_marker_and_the_end_marker():
    example = get_format("lyra", train_on_names=True).render(TAVERN)
    pieces = [example.text[s:e] for s, e in example.trained]
    assert pieces == [
        "Old Fenn: Fenn looked up from the bar.[/INST]",
        "Sable: Sable did not look up at all.[/INST]<|im_end|>",
    ]


def test_lyra_without_names_leaves_the_name_untrained():
    example = get_format("lyra", train_on_names=False).render(TAVERN)
    assert [example.text[s:e] for s, e in example.trained] == [
        "Fenn looked up from the bar.[/INST]",
        "Sable did not look up at all.[/INST]<|im_end|>",
    ]


def test_chatml_text_and_trained_spans_are_exact():
    example = get_format("chatml", train_on_names=True).render(TAVERN)
    assert example.text == (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nMara Quill: Mara pushed the tavern door open.<|im_end|>\n"
        "<|im_start|>assistant\nOld Fenn: Fenn looked up from the bar.<|im_end|>\n"
        "<|im_start|>assistant\nSable: Sable did not look up at all.<|im_end|>\n"
    )
    assert [example.text[s:e] for s, e in example.trained] == [
        "Old Fenn: Fenn looked up from the bar.<|im_end|>",
        "Sable: Sable did not look up at all.<|im_end|>",
    ]


def test_a_user_without_sheet_gets_no_bio_line():
    entry = Entry("e", "Zed", (Turn("Zed", "hi", "user"), Turn("Ada", "ho", "model")), {})
    assert "[Human User]\nZed\n[Involved Characters]\nAda\n---\nThe roleplay begins now." in \
        get_format("lyra", True).render(entry).text


def thread(posts, **kw):
    return Thread(id="t", posts=tuple(Post(**p) for p in posts), **kw)


def test_post_character_falls_back_to_the_players_one_character_then_the_author():
    posts = [{"author": "amy", "text": "a"}, {"author": "bob", "text": "b"}, {"author": "cat", "text": "c"},
             {"author": "amy", "character": "Override", "text": "d"}] * 2
    t = thread(posts, characters=(CharacterInfo("Lira", player="amy"), CharacterInfo("Brom", player="bob"),
                                  CharacterInfo("Tess", player="bob")))
    entry = build_entry(t, DataConfig(path="x", min_turns=1), SCHEMA).entry
    # bob plays two characters, so his posts fall back to his own name
    assert [turn.character for turn in entry.turns[:4]] == ["Lira", "bob", "cat", "Override"]


def test_user_is_the_given_one_else_the_first_surviving_poster():
    posts = [{"character": "A", "text": "OOC: hi all"}, {"character": "B", "text": "b"},
             {"character": "A", "text": "a"}, {"character": "B", "text": "b2"}]
    cfg = DataConfig(path="x", min_turns=1)
    assert build_entry(thread(posts), cfg, SCHEMA).entry.user == "B"
    assert build_entry(thread(posts, user="A"), cfg, SCHEMA).entry.user == "A"


def test_trailing_user_posts_are_dropped_and_counted():
    posts = [{"character": c, "text": c} for c in ["U", "M", "U", "M", "M", "U", "U"]]
    result = build_entry(thread(posts), DataConfig(path="x", min_turns=1), SCHEMA)
    assert [t.role for t in result.entry.turns] == ["user", "model", "user", "model", "model"]
    assert result.posts_removed == {"trailing_user": 2}


def test_filters_count_what_will_be_rendered_and_the_first_failing_reason_wins():
    cfg = DataConfig(path="x", min_turns=6, min_characters=2, max_characters=3)
    six_then_trailing = [{"character": c, "text": c} for c in ["U", "M", "U", "M", "M", "U"]]
    assert build_entry(thread(six_then_trailing), cfg, SCHEMA).reason == "too_few_turns"
    one_character = [{"character": "U", "text": str(i)} for i in range(3)]
    assert build_entry(thread(one_character), cfg, SCHEMA).reason == "too_few_turns"  # fails both: first wins
    alone = [{"character": "M", "text": str(i)} for i in range(6)]
    assert build_entry(thread(alone, user="U"), cfg, SCHEMA).reason == "too_few_characters"  # silent user not counted
    crowd = [{"character": c, "text": c} for c in "UABCDE"]
    assert build_entry(thread(crowd), cfg, SCHEMA).reason == "too_many_characters"
    ok = build_entry(thread([{"character": c, "text": c} for c in "UAUAUA"]), cfg, SCHEMA)
    assert not isinstance(ok, Dropped)
