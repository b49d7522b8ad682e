"""The data-quality detectors on constructed posts: each kind found, and the hard negatives left alone."""

import random

import pytest

from grouprp.config import ConfigError, LowEffortConfig
from grouprp.quality.duplicates import ThreadIndex, double_posts, sketch_thread
from grouprp.quality.effort import literate, low_effort, repetition
from grouprp.quality.genres import UNTAGGED, load_lexicon, over_cap, shares, tag
from grouprp.quality.impersonation import find_impersonation
from grouprp.quality.ooc import has_ooc, ooc_only, ooc_spans, remove_spans
from grouprp.quality.text import words as read_words

CAST = ["Ilsa Marrow", "Corvin Hale", "Pell"]


def tail(text, user="Ilsa Marrow", cast=CAST):
    found = find_impersonation(text, user, cast)
    return None if found.tail is None else text[found.tail:]


@pytest.mark.parametrize("text, expected", [
    ("Corvin shut the door behind them. Ilsa nodded and followed him inside.", "Ilsa nodded and followed him inside."),
    ('Corvin laughed. "Fine," Ilsa muttered, and took the lamp.', '"Fine," Ilsa muttered, and took the lamp.'),
    ("Pell counted the coins. Ilsa's hand went to her knife.", "Ilsa's hand went to her knife."),
    ("Corvin waited.\n\nMarrow shrugged. The rain kept on.", "Marrow shrugged. The rain kept on."),
    ('Corvin pointed north. "Now?" asked Ilsa.', '"Now?" asked Ilsa.'),
    ("The bell rang. *Ilsa and Corvin walked on toward the pier.*", "*Ilsa and Corvin walked on toward the pier.*"),
    ("Pell grinned. Then Ilsa felt the cold settle in. Snow began to fall.",
     "Then Ilsa felt the cold settle in. Snow began to fall."),
])
def test_an_impersonating_tail_is_found_to_the_end_of_the_post(text, expected):
    assert tail(text) == expected


@pytest.mark.parametrize("text", [
    '"Ilsa, get down!" Corvin shouted, dragging the table over.',                     # vocative, in quotes
    "Corvin handed Ilsa the map and pointed at the river.",                          # the user as the object
    'Pell sighed. "Ilsa will never agree to that," she said.',                         # talked about in quotes
    "He watched Ilsa leave, then turned back to the fire.",
    "Corvin told Ilsa about the ship, which was more than he told anyone.",           # a speech verb, object
    "I watched her go and said nothing.",                                            # first person
])
def test_mentions_of_the_users_character_are_not_impersonation(text):
    assert find_impersonation(text, "Ilsa Marrow", CAST).sentences == ()


def test_impersonation_followed_by_another_character_is_inside_not_a_tail():
    text = "Ilsa drew her sword. Corvin stepped between them and raised a hand."
    found = find_impersonation(text, "Ilsa Marrow", CAST)
    assert found.tail is None and [text[s:e] for s, e in found.inside] == ["Ilsa drew her sword."]


@pytest.mark.parametrize("text, acting", [
    ("Hope was all they had left, and Corvin knew it.", False),
    ("She will go, Corvin decided. Hope is a fragile thing.", False),
    ("Corvin lit the lamp. Hope smiled and sat down beside him.", True),
    ('Corvin lit the lamp. "Stay," Hope said.', True),
])
def test_a_user_named_like_a_common_word_needs_a_plain_action_or_speech(text, acting):
    assert (find_impersonation(text, "Hope", ["Hope", "Corvin"]).tail is not None) is acting


@pytest.mark.parametrize("text, kind, span", [
    ("Mara drew her blade. [OOC: sorry, busy week] The door gave way.", "bracketed", "[OOC: sorry, busy week]"),
    ("He waited. (ooc - love where this is going!)\nThe rain kept on.", "bracketed",
     "(ooc - love where this is going!)"),
    ("He waited. ((my cat walked on the keyboard)) The rain kept on.", "bracketed",
     "((my cat walked on the keyboard))"),
    ("The guards laughed. OOC: I will be away until Monday.\nShe walked on.", "marker",
     "OOC: I will be away until Monday."),
    ("She sat down.\n// short one, sorry guys", "slashes", "// short one, sorry guys"),
    ("@Kestrel your turn! Mara turned to the window.", "mention", "@Kestrel your turn!"),
    ("The fire crackled. Sorry for the late post, work was crazy.", "apology",
     "Sorry for the late post, work was crazy."),
    ("The fire crackled, brb.", "chat", ", brb"),
    ("lol that took forever to write.\nThe fire crackled.", "chat", "lol that took forever to write."),
    ("Soundtrack: https://example.com/song He hummed the tune.", "link", "Soundtrack: https://example.com/song"),
    ("The end of the road.\n\nEdit: fixed a typo.", "edit", "Edit: fixed a typo."),
    ("The door opened. Hope this is okay!", "meta", "Hope this is okay!"),
])
def test_each_kind_of_ooc_text_is_found(text, kind, span):
    spans = ooc_spans(text)
    assert [(text[s.start:s.end], s.kind) for s in spans] == [(span, kind)]
    assert has_ooc(text)


@pytest.mark.parametrize("text", [
    '"Sorry for the delay," the clerk said, sliding the papers over.',               # in-character apology
    '"Write down www.harbour-news.example, it\'s all there," Mara said.',             # a web address, spoken
    '"Mail me at ilsa@example.org," she said. "Or don\'t."',
    "He counted the steps (twelve, she hoped) and waited.",                          # in-character parentheses
    "The players took the field as the crowd roared.",
    '"brb," Pell typed, and put the phone face down.',
    "She edited the letter twice before she sealed it.",
])
def test_in_character_text_is_not_ooc(text):
    assert ooc_spans(text) == [] and not has_ooc(text)


def test_trimming_ooc_tidies_the_seams_and_a_post_of_only_ooc_is_ooc_only():
    text = "The hunter sat by the fire, lol.\n\n[OOC: back tomorrow]\n\nThe fire died."
    spans = ooc_spans(text)
    trimmed, at = remove_spans(text, spans)
    assert trimmed == "The hunter sat by the fire.\n\nThe fire died."
    assert len(at) == 2 and not ooc_only(text, spans)
    only = "((brb, dinner)) @Mara your turn!"
    assert ooc_only(only, ooc_spans(only))


def words(rng, n):
    return " ".join(rng.choice(["salt", "lamp", "river", "stone", "bell", "fog", "rope", "gull", "tide", "oar",
                                "mast", "wind", "ink", "coin", "road"]) + str(rng.randint(0, 99)) for _ in range(n))


def test_a_thread_copied_with_small_edits_is_a_near_copy_and_a_different_one_is_not():
    rng = random.Random(0)
    thread = [words(rng, 80) for _ in range(12)]
    edited = list(thread)
    edited[2] = edited[2].replace(edited[2].split()[7], "changed")  # a word changed
    edited[5] = edited[5] + " Edit: typo."                          # a note added
    edited.insert(7, "bump")                                        # a post inserted
    other = [words(rng, 80) for _ in range(12)]
    index = ThreadIndex(threshold=0.8, num_perm=64)

    def sketch(posts):
        return sketch_thread([read_words(p) for p in posts], 64, 2000)

    assert index.add("first", sketch(thread)) is None
    assert index.add("other", sketch(other)) is None
    copy = index.add("edited", sketch(edited))
    assert copy is not None and copy.of == "first" and not copy.exact and copy.similarity >= 0.8
    exact = index.add("again", sketch(thread))
    assert exact is not None and exact.of == "first" and exact.exact


def test_a_double_post_is_a_repeat_by_the_same_character_only():
    rng = random.Random(1)
    post = words(rng, 40)
    posts = [("Ann", post), ("Bo", words(rng, 40)), ("Ann", post + " Edited."), ("Bo", post),
             ("Ann", "Yes, she said quietly."), ("Ann", "Yes, she said quietly.")]
    found = double_posts([(who, read_words(text)) for who, text in posts], 0.8)
    assert found == [None, None, 0, None, None, None]  # the same text by another character; short repeats: style


def test_low_effort_short_repetitive_and_non_text_posts():
    cfg = LowEffortConfig()

    def judge(text, thread_literate):
        return low_effort(text, read_words(text), thread_literate, cfg)

    assert literate([60, 55, 70, 3], cfg.literate_words) and not literate([5, 8, 30], cfg.literate_words)
    assert judge("ok lol", True) == "short" and judge("ok lol", False) is None
    loop = "and then we ran " * 12
    assert repetition(read_words(loop)) > 0.8 and judge(loop, False) == "repetition"
    assert judge(":) :) :) <3 <3 !!! ??? ...", False) == "non_text"
    assert judge("1234 5678 9012 3456 7890", False) == "non_text"  # digits are not letters
    prose = ("The harbour was quiet before dawn, the boats tied two by two, and nobody on the quay said a word "
             "about the ship that had not come back.")
    assert repetition(read_words(prose)) == 0 and judge(prose, True) is None
    # the cheap bound on distinct words never hides a loop: it is only returned when it is under the limit
    assert repetition(read_words(loop), at_most=0.5) == repetition(read_words(loop))


def test_genres_are_tagged_from_the_lexicon_and_a_users_file_extends_it(tmp_path):
    lexicon = load_lexicon()
    fantasy = ["The mage raised her staff; the dragon circled the castle while the knight drew his sword.",
               "In the tavern an elf sold a potion and a scroll of runes."]
    def tag_texts(texts, lexicon):
        return tag([read_words(t) for t in texts], lexicon)

    assert tag_texts(fantasy, lexicon)[0] == "fantasy"
    assert tag_texts(["They talked about nothing much, then went home."], lexicon) == ()
    extra = tmp_path / "genres.yaml"
    extra.write_text("noir: [gumshoe, dame, fedora, rain-slick, precinct]\nfantasy: [moonblade]\n")
    noir = ["The gumshoe tipped his fedora at the dame by the precinct door.", "Another gumshoe, another dame."]
    lexicon = load_lexicon(str(extra))
    assert tag_texts(noir, lexicon)[0] == "noir" and "moonblade" in lexicon.words["fantasy"]
    assert "secret identity" in lexicon.phrases["superhero"] and "team up" in lexicon.phrases["superhero"]
    extra.write_text("noir: gumshoe\n")
    with pytest.raises(ConfigError, match=r"data.quality.genres: .*genre 'noir' must be a list of words"):
        load_lexicon(str(extra))
    extra.write_text("noir: [gumshoe\n")
    with pytest.raises(ConfigError, match=r"data.quality.genres: .*genres.yaml:\d+ is not valid YAML"):
        load_lexicon(str(extra))


def test_the_genre_cap_leaves_out_as_few_threads_as_it_takes_and_is_seeded():
    mains = ["fantasy"] * 12 + ["science fiction"] * 4 + ["horror"] * 2 + [UNTAGGED] * 2
    out = over_cap(mains, 0.4, seed=0)
    kept = [m for i, m in enumerate(mains) if i not in out]
    assert all(share <= 0.4 for genre, share in shares(kept).items() if genre != UNTAGGED)
    # (12 - k) / (20 - k) <= 0.4 first holds at k = 7: any fewer would leave fantasy above the cap
    assert len(out) == 7 and all(mains[i] == "fantasy" for i in out)
    assert over_cap(mains, 0.4, seed=0) == out and over_cap(mains, 0.4, seed=1) != out
    assert over_cap(mains, 0.7, seed=0) == set()


def test_a_cap_no_set_of_threads_can_meet_says_what_cap_would():
    with pytest.raises(ValueError, match=r"with 2 genre\(s\) and no untagged threads the cap must be at least 0.50"):
        over_cap(["fantasy"] * 5 + ["horror"] * 5, 0.4, seed=0)
