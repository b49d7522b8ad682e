"""Forum text cleaning: out-of-character asides, BBCode/HTML markup, entities, whitespace and control characters.
Pure str -> str, and linear in the length of the text whatever it holds (unclosed tags and asides included).

Order matters and is fixed: OOC detection on the raw text, then markup, then entities and whitespace (so an
escaped `&lt;b&gt;` stays literal text instead of turning into bold).

Markup is handled in two passes over the tags found by one scan each, pairing tags with a stack per tag kind (a
regular expression per tag pair rescans the text from every unclosed tag, which is quadratic):
1. quotes, blockquotes and images go with their content;
2. bold and italic become markdown emphasis, <br> and </p> line breaks, and every other known tag is dropped with
   its content kept. An unclosed tag is dropped and its content kept.
"""

from __future__ import annotations

import html
import re
from collections import deque
from typing import Optional

# Only known tag names: role-play text is full of things like "[sighs]" or "<3" that are not markup. A tag's
# argument stops at the next bracket, so scanning for tags never runs past the next one.
_BBCODE_TAGS = ("b|i|u|s|strike|color|colour|size|font|center|left|right|justify|align|indent|url|email|spoiler|"
                "code|list|\\*|sub|sup|hr|table|tr|td|th|highlight|glow|shadow|user|member|media|youtube|"
                "attach|plain|tab|quote|img|h[1-6]|heading|ispoiler|icode")
_HTML_TAGS = ("a|abbr|b|big|blockquote|br|center|code|del|div|em|font|h[1-6]|hr|i|img|ins|li|mark|ol|p|pre|q|s|"
              "small|span|strike|strong|sub|sup|table|tbody|td|th|thead|tr|u|ul")
_TAG = re.compile(rf"\[(?P<bb_close>/?)(?P<bb>{_BBCODE_TAGS})(?:=[^\[\]\n]*)?\]"
                  rf"|<(?P<html_close>/?)(?P<html>{_HTML_TAGS})(?:\s[^<>]*)?/?>", re.I)
# tags that go with their content, each kind in a pass of its own, in this order; quotes pair innermost first
# (nested quotes go too), an image with the nearest closing tag after it
_DROPPED = [(re.compile(r"\[(/?)quote(?:=[^\[\]\n]*)?\]", re.I), "innermost"),
            (re.compile(r"<(/?)blockquote(?:\s[^<>]*)?>", re.I), "innermost"),
            (re.compile(r"\[(/?)img(?:=[^\[\]\n]*)?\]", re.I), "nearest")]
_EMPHASIS = {("bb", "b"): "**", ("html", "b"): "**", ("html", "strong"): "**",
             ("bb", "i"): "*", ("html", "i"): "*", ("html", "em"): "*"}

_WHOLLY_OOC = re.compile(r"^\s*(?:ooc\s*:|\(\s*ooc\b|\[\s*ooc\s*\])", re.I)
_OOC_LINE = re.compile(r"[ \t]*ooc[ \t]*:", re.I)
_MANY_NEWLINES = re.compile(r"\n{3,}")
# C0 controls but tab and newline, DEL, C1 controls, the byte-order mark, and surrogates (never valid text)
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff\ud800-\udfff]")
_SEPARATORS = str.maketrans({"\u2028": "\n", "\u2029": "\n", "\u00a0": " ", "\u202f": " "})


def is_wholly_ooc(raw: str) -> bool:
    """True for a post that is entirely out of character: `OOC: ...`, `(OOC ...`, `[OOC] ...`, or `((...))`."""
    text = raw.strip()
    if _WHOLLY_OOC.match(text):
        return True
    return text.startswith("((") and text.endswith("))") and "))" not in text[2:-2]


def cut_ooc(raw: str) -> str:
    """Remove inline `((...))` asides and trailing `OOC:` lines from in-character text."""
    text = _cut_asides(raw) if "((" in raw else raw
    if "ooc" not in text.lower():  # the common case, and cheaper than looking line by line
        return text
    return _cut_trailing_ooc_lines(text)


def _cut_asides(text: str) -> str:
    """Each `((` with the nearest `))` after it goes, with the spaces before it (and after it too, when it starts
    its line)."""
    out, position = [], 0
    while True:
        start = text.find("((", position)
        if start < 0:
            break
        end = text.find("))", start + 2)
        if end < 0:  # no `))` after this one, so none after any later `((` either
            break
        end += 2
        left = start
        while left > position and text[left - 1] in " \t":
            left -= 1
        if left == 0 or text[left - 1] == "\n":
            while end < len(text) and text[end] in " \t":
                end += 1
        out.append(text[position:left])
        position = end
    out.append(text[position:])
    return "".join(out)


def _cut_trailing_ooc_lines(text: str) -> str:
    end = len(text)
    while True:
        while end and text[end - 1].isspace():
            end -= 1
        cut = text.rfind("\n", 0, end)
        if cut < 0 or not _OOC_LINE.match(text, cut + 1, end):
            return text[:end]
        end = cut


def strip_markup(text: str) -> str:
    """BBCode/HTML to plain text with markdown emphasis; quotes and images are removed with their content."""
    if "[" not in text and "<" not in text:  # most posts: nothing to do, and this runs on every post
        return text
    for pattern, pairing in _DROPPED:
        text = _drop_elements(text, pattern, pairing)
    return _convert_tags(text)


def _tag_key(match: re.Match) -> tuple[str, str, bool]:
    """(syntax, lower-case tag name, closing) of a tag found by _TAG."""
    if match["bb"] is not None:
        return "bb", match["bb"].lower(), bool(match["bb_close"])
    return "html", match["html"].lower(), bool(match["html_close"])


def _drop_elements(text: str, pattern: re.Pattern, pairing: str) -> str:
    """Remove the elements of one tag kind with everything inside them; unclosed tags stay as text (the next pass
    drops them as tags, keeping their content)."""
    if not pattern.search(text):
        return text
    out: list[str] = []
    waiting: deque = deque()  # output index of each open tag not yet closed, oldest first
    position = 0
    for match in pattern.finditer(text):
        out.append(text[position:match.start()])
        position = match.end()
        if not match.group(1):
            waiting.append(len(out))
            out.append(match.group())
        elif not waiting:
            out.append(match.group())  # a stray closing tag
        else:
            start = waiting.pop() if pairing == "innermost" else waiting.popleft()
            del out[start:]
            while waiting and waiting[-1] >= start:  # tags opened inside went with the content
                waiting.pop()
    out.append(text[position:])
    return "".join(out)


def _convert_tags(text: str) -> str:
    out: list[str] = []
    waiting: dict[tuple, deque] = {}  # output index of each open emphasis tag not yet closed, per kind
    position = 0
    for match in _TAG.finditer(text):
        out.append(text[position:match.start()])
        position = match.end()
        syntax, name, closing = _tag_key(match)
        key = (syntax, name)
        if key in _EMPHASIS:
            if not closing:
                waiting.setdefault(key, deque()).append(len(out))
                out.append("")  # becomes the opening marker if the tag is closed
            elif waiting.get(key):
                # the oldest open tag of the kind: the markers are all alike, so which open tags get one is all
                # that matters, and these are the ones the first tag-to-nearest-close reading would pick
                out[waiting[key].popleft()] = _EMPHASIS[key]
                out.append(_EMPHASIS[key])
        elif key == ("html", "br"):
            out.append("\n")
        elif key == ("html", "p") and closing:
            out.append("\n\n")
    out.append(text[position:])
    return "".join(out)


def strip_control_characters(text: str) -> tuple[str, int]:
    """The text without control characters (NUL, other C0 and C1 controls, BOMs, broken surrogates), and how many
    were removed; tab and newline stay."""
    if not _CONTROL.search(text):
        return text, 0
    return _CONTROL.subn("", text)


def normalize_whitespace(text: str) -> str:
    """Unescape entities, turn non-breaking spaces into spaces, trim line ends, keep at most one blank line."""
    if "&" in text:
        text = html.unescape(text)
    text = text.translate(_SEPARATORS)
    if " \n" in text or "\t\n" in text:
        text = "\n".join(line.rstrip(" \t") for line in text.split("\n"))
    if "\n\n\n" in text:
        text = _MANY_NEWLINES.sub("\n\n", text)
    return text.strip()


def clean_text(raw: str) -> str:
    """Markup, entities, whitespace and control characters (no OOC handling): for sheet values and post bodies."""
    text, _ = strip_control_characters(normalize_newlines(raw))
    return normalize_whitespace(strip_markup(text))


def clean_name(raw: str) -> str:
    """A character or player name as used in prompts: no control characters, no outer whitespace."""
    return strip_control_characters(raw)[0].strip()


def clean_post(raw: str) -> tuple[str, Optional[str]]:
    """Clean one post. Returns (text, None), or ("", reason) with reason `ooc` or `empty` when it is removed."""
    raw = normalize_newlines(raw)
    if is_wholly_ooc(raw):
        return "", "ooc"
    text = clean_text(cut_ooc(raw))
    return (text, None) if text else ("", "empty")


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")
