"""Forum text cleaning: out-of-character asides, BBCode/HTML markup, entities and whitespace. Pure str -> str.

Order matters and is fixed: OOC detection on the raw text, then markup, then entities and whitespace (so an
escaped `&lt;b&gt;` stays literal text instead of turning into bold).
"""

from __future__ import annotations

import html
import re
from typing import Optional

# Tags whose content goes too: quoted posts belong to someone else, images have no text.
_DROP_WITH_CONTENT = [
    re.compile(r"\[quote(?:=[^\]]*)?\](?:(?!\[quote[=\]]).)*?\[/quote\]", re.I | re.S),
    re.compile(r"<blockquote\b[^>]*>(?:(?!<blockquote\b).)*?</blockquote>", re.I | re.S),
    re.compile(r"\[img(?:=[^\]]*)?\].*?\[/img\]", re.I | re.S),
    re.compile(r"<img\b[^>]*>", re.I),
]
_BOLD = re.compile(r"\[b\](.*?)\[/b\]|<(b|strong)\b[^>]*>(.*?)</\2>", re.I | re.S)
_ITALIC = re.compile(r"\[i\](.*?)\[/i\]|<(i|em)\b[^>]*>(.*?)</\2>", re.I | re.S)
_LINE_BREAK = re.compile(r"<br\s*/?>", re.I)
_PARAGRAPH_END = re.compile(r"</p\s*>", re.I)
# Every other known tag is dropped and its content kept. Only known names: role-play text is full of things
# like "[sighs]" or "<3" that are not markup.
_BBCODE_TAGS = ("b|i|u|s|strike|color|colour|size|font|center|left|right|justify|align|indent|url|email|spoiler|"
                "code|list|\\*|sub|sup|hr|table|tr|td|th|highlight|glow|shadow|user|member|media|youtube|"
                "attach|plain|tab|quote|img|h[1-6]|heading|ispoiler|icode")
_BBCODE_TAG = re.compile(rf"\[/?(?:{_BBCODE_TAGS})(?:=[^\]\n]*)?\]", re.I)
_HTML_TAGS = ("a|abbr|b|big|blockquote|br|center|code|del|div|em|font|h[1-6]|hr|i|img|ins|li|mark|ol|p|pre|q|s|"
              "small|span|strike|strong|sub|sup|table|tbody|td|th|thead|tr|u|ul")
_HTML_TAG = re.compile(rf"</?(?:{_HTML_TAGS})(?:\s[^<>]*)?/?>", re.I)

_WHOLLY_OOC = re.compile(r"^\s*(?:ooc\s*:|\(\s*ooc\b|\[\s*ooc\s*\])", re.I)
_INLINE_OOC = re.compile(r"^[ \t]*\(\(.*?\)\)[ \t]*|[ \t]*\(\(.*?\)\)", re.S | re.M)
_TRAILING_OOC_LINE = re.compile(r"\n[ \t]*ooc\s*:[^\n]*\s*\Z", re.I)
_TRAILING_SPACES = re.compile(r"[ \t]+$", re.M)
_MANY_NEWLINES = re.compile(r"\n{3,}")


def is_wholly_ooc(raw: str) -> bool:
    """True for a post that is entirely out of character: `OOC: ...`, `(OOC ...`, `[OOC] ...`, or `((...))`."""
    text = raw.strip()
    if _WHOLLY_OOC.match(text):
        return True
    return text.startswith("((") and text.endswith("))") and "))" not in text[2:-2]


def cut_ooc(raw: str) -> str:
    """Remove inline `((...))` asides and a trailing `OOC:` line from in-character text."""
    text = _INLINE_OOC.sub("", raw) if "((" in raw else raw
    if "ooc" not in text.lower():  # the common case, and cheaper than the regex below
        return text
    previous = None
    while previous != text:
        previous, text = text, _TRAILING_OOC_LINE.sub("", text.rstrip())
    return text


def strip_markup(text: str) -> str:
    """BBCode/HTML to plain text with markdown emphasis; quotes and images are removed with their content."""
    if "[" not in text and "<" not in text:  # most posts: nothing to do, and this runs on every post
        return text
    for pattern in _DROP_WITH_CONTENT:
        previous = None
        while previous != text:  # innermost first, so nested quotes go too
            previous, text = text, pattern.sub("", text)
    text = _replace_until_stable(_BOLD, lambda m: f"**{m.group(1) if m.group(1) is not None else m.group(3)}**", text)
    text = _replace_until_stable(_ITALIC, lambda m: f"*{m.group(1) if m.group(1) is not None else m.group(3)}*", text)
    text = _LINE_BREAK.sub("\n", text)
    text = _PARAGRAPH_END.sub("\n\n", text)
    text = _BBCODE_TAG.sub("", text)
    return _HTML_TAG.sub("", text)


def normalize_whitespace(text: str) -> str:
    """Unescape entities, turn non-breaking spaces into spaces, trim line ends, keep at most one blank line."""
    if "&" in text:
        text = html.unescape(text)
    text = text.replace("\u00a0", " ").replace("\u202f", " ")
    if " \n" in text or "\t\n" in text:
        text = _TRAILING_SPACES.sub("", text)
    if "\n\n\n" in text:
        text = _MANY_NEWLINES.sub("\n\n", text)
    return text.strip()


def clean_text(raw: str) -> str:
    """Markup, entities and whitespace (no OOC handling): used for sheet values and post bodies alike."""
    return normalize_whitespace(strip_markup(normalize_newlines(raw)))


def clean_post(raw: str) -> tuple[str, Optional[str]]:
    """Clean one post. Returns (text, None), or ("", reason) with reason `ooc` or `empty` when it is removed."""
    raw = normalize_newlines(raw)
    if is_wholly_ooc(raw):
        return "", "ooc"
    text = clean_text(cut_ooc(raw))
    return (text, None) if text else ("", "empty")


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _replace_until_stable(pattern: re.Pattern, repl, text: str) -> str:
    previous = None
    while previous != text:  # nested emphasis, e.g. [b][i]x[/i][/b]
        previous, text = text, pattern.sub(repl, text)
    return text
