"""Forum text cleaning (docs/format.md, "Cleaning"): exact input -> output pairs."""

import pytest

from grouprp.clean import clean_post, clean_text, is_wholly_ooc, strip_control_characters


@pytest.mark.parametrize("raw, expected", [
    ("[b]Stop[/b] right there, [i]thief[/i].", "**Stop** right there, *thief*."),
    ("<b>Stop</b> right <i>there</i>.", "**Stop** right *there*."),
    ("She [color=#ff0000]smiled[/color] [size=5]widely[/size], [u]very[/u] [center]wide[/center].",
     "She smiled widely, very wide."),
    ('<span style="color:red">Red</span> words', "Red words"),
    ("[quote=Mira]You said this.[/quote]I answer.", "I answer."),
    ("[quote]outer [quote]inner[/quote] still outer[/quote]Mine.", "Mine."),
    ("<blockquote>older post</blockquote>Reply.", "Reply."),
    ("Look: [img]https://example.org/a.png[/img] there.", "Look:  there."),
    ("See [url=https://example.org]the map[/url].", "See the map."),
    ("Fish &amp; chips &quot;now&quot; &#39;please&#39;", "Fish & chips \"now\" 'please'"),
    ("a\u00a0b&nbsp;c", "a b c"),
    ("line one   \r\nline two\t\r\n", "line one\nline two"),
    ("para one\n\n\n\n\npara two", "para one\n\npara two"),
    ("&lt;b&gt;not bold&lt;/b&gt;", "<b>not bold</b>"),
    ("[sighs] She waits <3", "[sighs] She waits <3"),
    ("one<br>two<br/>three", "one\ntwo\nthree"),
])
def test_markup_entities_and_whitespace(raw, expected):
    assert clean_text(raw) == expected


@pytest.mark.parametrize("raw", [
    "OOC: back tomorrow, sorry!",
    "ooc: lowercase works too",
    "(OOC: where is everyone?)",
    "[OOC] Posting from my phone.",
    "  ((Does anyone mind if I skip ahead?))  ",
])
def test_wholly_ooc_posts_are_removed(raw):
    assert is_wholly_ooc(raw)
    assert clean_post(raw) == ("", "ooc")


def test_a_post_with_asides_at_both_ends_is_not_wholly_ooc():
    raw = "((brb)) Tamsin drew her blade. ((back))"
    assert not is_wholly_ooc(raw)
    assert clean_post(raw) == ("Tamsin drew her blade.", None)


@pytest.mark.parametrize("raw, expected", [
    ("He nodded. ((sorry, dinner)) Then he left.", "He nodded. Then he left."),
    ("The door creaked.\nOOC: short post, tired today", "The door creaked."),
    ("The door creaked.\n\nooc: two trailing\nOOC: notes", "The door creaked."),
    ("She said OOC: things mid-line.", "She said OOC: things mid-line."),
])
def test_inline_and_trailing_ooc_is_cut(raw, expected):
    assert clean_post(raw) == (expected, None)


def test_ooc_is_detected_on_raw_text_before_markup():
    # the marker is inside bold markup, so the raw text does not start with it: in character
    assert clean_post("[b]OOC:[/b] hello") == ("**OOC:** hello", None)


@pytest.mark.parametrize("raw", ["", "   \n\t ", "[img]https://example.org/x.png[/img]", "[quote]only a quote[/quote]"])
def test_posts_empty_after_cleaning_are_removed(raw):
    assert clean_post(raw) == ("", "empty")


@pytest.mark.parametrize("raw, expected", [
    ("(( a " * 3, "(( a (( a (( a"),                               # unclosed asides stay text
    ("[b]Halt " * 3, "Halt Halt Halt"),                            # unclosed tags go, their text stays
    ("[quote]a [quote]b", "a b"),                                  # unclosed quotes too
    ("x[quote]a[quote]b[/quote]c[/quote]y", "xy"),                 # nested quotes go whole
    ("[img]a.png [img]b.png[/img] after", "after"),                # an image with the nearest close
    ("<b>x<b>y</b>", "**xy**"),                                    # the first open tag of a kind pairs first
    ("[/b][/quote]</i> stray", "stray"),                           # stray closing tags go
    ("[color=#c33 no end [b]bold[/b]", "[color=#c33 no end **bold**"),  # an unterminated tag is text
    ("Corvin bowed.\n" + "OOC: later\n" * 500, "Corvin bowed."),   # every trailing OOC line goes
    ("a" + " " * 1000 + "b  \nc", "a" + " " * 1000 + "b\nc"),       # spaces inside a line stay
])
def test_pathological_markup_is_cleaned_as_the_rules_say(raw, expected):
    assert clean_post(raw) == (expected, None)


def test_control_characters_are_removed_and_counted():
    text = "Ma\x00ra\x07 sa\ufeffid\x85 hi\ud800.\tOk\nyes"
    assert strip_control_characters(text) == ("Mara said hi.\tOk\nyes", 5)
    assert strip_control_characters("plain text") == ("plain text", 0)
    assert clean_post("line one\u2028line two\x0c") == ("line one\nline two", None)
