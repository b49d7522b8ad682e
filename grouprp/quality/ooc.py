"""Out-of-character text inside a post: what the cleaning rules (a post opening with `OOC:`, `((...))` asides,
trailing `OOC:` lines) leave in.

Forum writers talk to each other in the middle of their story: `[OOC: sorry, busy week]`, `(ooc - love this)`,
an `OOC:` sentence after the narration, a `// short one, sorry` line, `@Marisol your turn!`, "sorry for the late
post", "brb", a link to the song they wrote to, an `Edit: fixed the typo` note. `ooc_spans` finds each of these as
a span of the post with its kind; text inside a character's quoted speech is never OOC (a character may say
"sorry for the delay"), but a bracketed `[OOC ...]` is OOC wherever it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import AbstractSet, Optional, Sequence

from grouprp.clean import cut_ooc, is_wholly_ooc, normalize_newlines
from grouprp.quality.text import inside, quoted, sentences, words

_BRACKETED = re.compile(r"\[\s*o\.?o\.?c\b[^\]\n]*\]?|\(\s*o\.?o\.?c\b[^)\n]*\)?|\{\s*o\.?o\.?c\b[^}\n]*\}?"
                        r"|\(\([^\n]*?\)\)", re.I)
_MARKER = re.compile(r"(?<![\w'])o\.?o\.?c\b\s*[:\-\u2013\u2014]", re.I)
_SLASHES = re.compile(r"(?:^|(?<=[ \t]))//+(?=[ \t]*\S)", re.M)
_MENTION = re.compile(r"(?:^|(?<=[\s(\[]))@[A-Za-z][\w.\-]*", re.M)
_LINK = re.compile(r"\b(?:https?://|www\.)\S+", re.I)
_EDIT = re.compile(r"(?:^|(?<=[\s(\[*_]))(?:edit(?:ed)?|eta|ninja[ -]edit)\b\s*(?:\d+\s*)?[:\-\u2013\u2014]"
                   r"|(?:^|(?<=[\s(\[*_]))edited (?:to|for|because|bc)\b", re.I | re.M)
_APOLOGY = re.compile(
    r"(?:^|(?<=[\s(\[*_]))(?:sorry|apologies|apologi[sz]e|my bad)\b[^.!?\n]{0,40}?\b(?:late|wait|delay|short|"
    r"slow|length|long|absen\w*|typos?|mobile|phone|post\w*|repl\w*|update|crap|rushed|quality|filler|lame|"
    r"took (?:me )?so long|taking so long|being (?:slow|late|away|gone))\b", re.I)
_META = re.compile(
    r"(?<![\w'])(?:your (?:turn|move)|(?:hope|hopefully) (?:this|that|it)(?:'s| is)? (?:ok|okay|alright|fine|good|"
    r"works)|let me know if|feel free to|writer'?s block|(?:short|filler|quick) post|posting from (?:my )?(?:phone|"
    r"mobile)|(?:i'?ll|will) (?:post|reply|write) (?:more )?(?:later|tomorrow|tonight|soon)|(?:other|fellow) "
    r"(?:writers|posters|rpers|roleplayers)|my muse|(?:my|your|the) (?:character sheet|cs)\b|(?:sorry|apologies),? "
    r"(?:all|everyone|guys|folks)\b)", re.I)
_CHAT_WORDS = frozenset(("brb", "afk", "gtg", "g2g", "ttyl", "bbl", "lol", "lmao", "rofl", "omg", "tbh", "imo",
                         "imho", "idk", "btw", "irl"))
_CHAT = re.compile(rf"(?<![\w'])(?:{'|'.join(sorted(_CHAT_WORDS))})(?![\w'])", re.I)
_PATTERNS = (
    ("bracketed", _BRACKETED, {"ooc"}, ("((", "o.o.c")), ("marker", _MARKER, {"ooc"}, ("o.o.c",)),
    ("slashes", _SLASHES, set(), ("//",)), ("edit", _EDIT, {"edit", "edited", "eta"}, ()),
    ("link", _LINK, {"http", "https", "www"}, ()), ("mention", _MENTION, set(), ("@",)),
    ("chat", _CHAT, _CHAT_WORDS, ()), ("apology", _APOLOGY, {"sorry", "apologies", "apologise", "apologize", "bad"}, ()),
    ("meta", _META, {"turn", "move", "hope", "hopefully", "let", "feel", "writer's", "writers", "post",
                     "posting", "reply", "write", "posters", "rpers", "roleplayers", "muse", "sheet", "cs", "sorry",
                     "apologies"}, ()))
"""Each kind's pattern, and the words (or, for the few cues that are not words, the text) every match of it
holds: a pattern runs only on a post that holds one (most posts hold none, and this runs on every post)."""
_LABEL = re.compile(r"(?:^|(?<=\s))[A-Za-z][\w ]{0,30}:[ \t]*$")
_LETTER = re.compile(r"[^\W\d_]")

KINDS = ("bracketed", "marker", "slashes", "mention", "link", "edit", "chat", "apology", "meta")
"""What each OOC span is: a bracketed [OOC]/(OOC)/((...)) aside, an `OOC:` marker and what follows it on its line,
a `//` aside, an @mention, a link, an edit note, chat shorthand (brb, lol), an apology for the post, or other talk
about the writing (your turn, hope this is okay, writer's block)."""


@dataclass(frozen=True)
class OOCSpan:
    start: int
    end: int
    kind: str


def ooc_spans(text: str, present: Optional[AbstractSet[str]] = None) -> list[OOCSpan]:
    """The out-of-character spans of a post, in order and never overlapping (each its own kind). `present`: the
    set of the post's words (quality.text.words), when the caller has it."""
    present = set(words(text)) if present is None else present
    wanted = [(kind, pattern) for kind, pattern, cue_words, cues in _PATTERNS
              if not cue_words.isdisjoint(present) or any(cue in text for cue in cues)]
    if not wanted:
        return []
    speech = quoted(text)
    found: list[OOCSpan] = []
    brackets: list[tuple[int, int]] = []
    for kind, pattern in wanted:
        for match in pattern.finditer(text):
            if kind == "bracketed":
                found.append(OOCSpan(match.start(), match.end(), kind))
                brackets.append(match.span())
                continue
            if inside(match.start(), speech) or inside(match.start(), brackets):
                continue  # a character's words, or already inside an [OOC ...] aside
            if kind in ("marker", "slashes"):
                found.append(OOCSpan(match.start(), _line_end(text, match.end()), kind))
            elif kind == "edit":
                found.append(OOCSpan(_unit_start(text, match.start()), _line_end(text, match.end()), kind))
            elif kind == "link":
                found.append(OOCSpan(*_link(text, match), kind))
            elif kind == "chat":
                found.append(OOCSpan(*_chat(text, match, speech), kind))
            else:
                found.append(OOCSpan(*_unit(text, match.start(), speech), kind))
    return _merged(found)


def ooc_only(text: str, spans: list[OOCSpan]) -> bool:
    """The post holds no in-character text once its OOC spans are taken out."""
    return not _LETTER.search(remove_spans(text, spans)[0])


def remove_spans(text: str, spans: Sequence[OOCSpan]) -> tuple[str, list[int]]:
    """The text without the spans, and where each span was in it. The seams are tidied: no space left before
    punctuation or at a line end, no dangling comma before a full stop ("by the fire, lol." -> "by the fire."),
    no more than one empty line where a line of its own went."""
    out, at, position = "", [], 0
    for span in spans:
        left = (out + text[position:span.start]).rstrip(" \t")
        right_at = span.end
        while right_at < len(text) and text[right_at] in " \t":
            right_at += 1
        right = text[right_at:right_at + 1]
        if right in (".", "!", "?"):
            left = left.rstrip(",;:")
        if right == "\n" and (not left or left.endswith("\n")):
            while right_at < len(text) and text[right_at] == "\n" and (not left or left.endswith("\n\n")):
                right_at += 1
            if left.endswith("\n") and not left.endswith("\n\n") and text[right_at:right_at + 1] == "\n":
                right_at += 1  # a blank line stays one blank line
        joiner = "" if (not left or left.endswith("\n") or not right or right in "\n,.;:!?") else " "
        at.append(len(left))
        out = left + joiner
        position = right_at
    out += text[position:]
    lead = len(out) - len(out.lstrip())
    out = out.strip()
    return out, [min(max(a - lead, 0), len(out)) for a in at]


def has_ooc(text: str) -> bool:
    """True when generated text is wholly OOC, holds an aside or trailing OOC line that cleaning would cut, or
    any OOC span the detector finds."""
    text = normalize_newlines(text)
    return is_wholly_ooc(text) or cut_ooc(text).strip() != text.strip() or bool(ooc_spans(text))


def _line_end(text: str, position: int) -> int:
    end = text.find("\n", position)
    return len(text) if end < 0 else end


def _unit_start(text: str, position: int) -> int:
    """Where the markup that opens an edit note begins (`*Edit:`, `(edit -`), or the note itself."""
    start = position
    while start > 0 and text[start - 1] in "*_([":
        start -= 1
    return start


def _link(text: str, match: re.Match) -> tuple[int, int]:
    """A link with its label (`Music: https://...`) or the brackets around it; the sentence it sits in stays."""
    start, end = match.span()
    while end > start and text[end - 1] in ".,;:!?)]\"'":
        end -= 1
    label = _LABEL.search(text, text.rfind("\n", 0, start) + 1, start)
    if label is not None:
        start = label.start()
    if start and text[start - 1] in "([" and end < len(text) and text[end] in ")]":
        start, end = start - 1, end + 1
    return start, end


def _chat(text: str, match: re.Match, speech: list[tuple[int, int]]) -> tuple[int, int]:
    """Chat shorthand: the parentheses around it; the word alone (with its comma) when it trails an
    in-character sentence ("by the fire, lol."); else the sentence it opens or is."""
    start, end = _unit(text, match.start(), speech)
    if text[start] in "([":
        return start, end
    before, after = text[start:match.start()], text[match.end():end]
    if re.search(r"\w", before) and not re.search(r"\w", after):
        cut = match.start()
        while cut > start and text[cut - 1] in " \t,;":
            cut -= 1
        return cut, match.end()
    return start, end


def _unit(text: str, position: int, speech: list[tuple[int, int]]) -> tuple[int, int]:
    """The smallest unit holding an OOC cue: the parentheses or brackets around it on its line, else its
    sentence."""
    line_start = text.rfind("\n", 0, position) + 1
    line_end = _line_end(text, position)
    for opener, closer in (("(", ")"), ("[", "]")):
        open_at = text.rfind(opener, line_start, position)
        if open_at >= 0 and text.find(closer, open_at, position) < 0:
            close_at = text.find(closer, position, line_end)
            if close_at >= 0:
                return open_at, close_at + 1
    for start, end in sentences(text, speech):
        if start <= position < end:
            return start, end
    return position, line_end


def _merged(spans: list[OOCSpan]) -> list[OOCSpan]:
    """Overlapping spans joined into the first of them (its kind wins), in order."""
    out: list[OOCSpan] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if out and span.start < out[-1].end:
            last = out[-1]
            out[-1] = OOCSpan(last.start, max(last.end, span.end), last.kind)
        else:
            out.append(span)
    return out
