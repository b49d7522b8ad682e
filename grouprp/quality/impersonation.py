"""Impersonation: a model turn that narrates or speaks for the user's character.

Forum writers finish their own character's part and then, above all at the end of a post, write what the user's
character does next ("Ilsa nodded and followed him.") or says ('"Fine," Ilsa said.'). Trained on, that teaches a
model to write the user's part. A sentence impersonates when the user's character is its actor (the name, or its
first or last word, opens the sentence and is followed by a possessive or by something that reads as a verb) or
its speaker (a speech verb next to the name, outside quotes). Names inside quoted speech are someone addressing or
talking about the character, never the character acting. Names that are also words a sentence can open with
("Hope", "Dawn") need a plain action or speech verb after them ("Hope smiled"; not "Hope was all they had"), and
names that are also modal verbs are not the actor before a pronoun or article ("Will you...", "May I..."). The
impersonating tail is the last run of sentences made of impersonating ones and ones with no named actor, up to
the end of the post, from its first impersonating sentence; a sentence in which another character acts ends it.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from typing import Iterable, Optional

from grouprp.quality.text import inside, quoted, sentences

SPEECH = set("""said says asked asks replied replies answered answers whispered whispers muttered mutters murmured
murmurs shouted shouts called calls yelled yells snapped snaps added adds laughed laughs sighed sighs growled growls
hissed hisses cried cries breathed breathes began begins continued continues insisted insists offered offers
admitted admits agreed agrees warned warns told tells demanded demands pleaded pleads repeated repeats stammered
stammers mumbled mumbles teased teases retorted retorts""".split())
ACTION = set("""nodded nods smiled smiles grinned grins laughed shrugged shrugs frowned frowns looked looks glanced
glances turned turns stepped steps walked walks ran runs stood stands sat sits drew draws took takes gave gives
pulled pulls pushed pushes raised raises lifted lifts reached reaches grabbed grabs followed follows watched
watches waited waits moved moves leaned leans knelt kneels rose rises dropped drops opened opens closed closes
winced winces blinked blinks stared stares shook shakes tilted tilts crossed crosses held holds let lets felt feels
thought thinks hesitated hesitates swallowed swallows decided decides headed heads went goes came comes left leaves
slipped slips climbed climbs jumped jumps hurried hurries rushed rushes sprinted sprints stumbled stumbles caught
catches threw throws set sets placed places put puts slid slides tucked tucks rolled rolls clenched clenches
gripped grips squeezed squeezes touched touches kissed kisses hugged hugs entered enters exited exits paused
pauses relaxed relaxes tensed tenses flinched flinches ducked ducks dodged dodges swung swings struck strikes
attacked attacks drank drinks ate eats read reads wrote writes listened listens noticed notices realized realizes
remembered remembers tried tries managed manages quickly slowly""".split())
AUX = set("was is had has could would did does felt seemed seems could couldn't didn't wasn't hadn't can will".split())
ADVERBS = set("then also just still finally quickly slowly quietly softly simply merely only already even".split())
CONNECTIVES = set("then and but so meanwhile finally suddenly slowly quietly softly instead afterwards later".split())
TITLES = set("old young lady lord sir dame captain doctor dr mister mr mrs ms miss the king queen prince princess "
             "master madam mistress father mother brother sister uncle aunt professor".split())
ABSTRACT = set("""hope grace dawn rose faith chance joy honor honour mercy patience summer autumn winter spring june
april august river storm sky star sunny rain snow frost ivy holly lily heather daisy""".split())
"""Names that are also words a sentence can open with on their own ("Hope was all they had", "Dawn came"): these
act only with a plain action or speech verb after them ("Hope smiled")."""
MODALS = {"will", "may"}
"""Names that are also modal verbs: not the actor when a pronoun or article follows ("Will you...", "May I")."""
_NOT_ACTORS = set("""i you he she it we they the a an this that these those his her their its my your our not
anyone anybody someone somebody there of or nor""".split())
_WORD = re.compile(r"[A-Za-z\u00c0-\u024f][\w'\u2019-]*")
_TAG_BEFORE = re.compile(r"[\"\u201d][ \t]*(\w+)[ \t]+$")  # '" asked ' right before a name
_CONNECTIVE_GAP = re.compile(r"[\s,]*")
_LEAD = re.compile(r"[\s*_~\-\u2014\u2013(\[]*")


@dataclass(frozen=True)
class Impersonation:
    """The impersonating sentences of a post, and where its impersonating tail begins (None: no tail)."""

    sentences: tuple[tuple[int, int], ...]
    tail: Optional[int]

    @property
    def inside(self) -> tuple[tuple[int, int], ...]:
        """Impersonating sentences that are not part of the tail."""
        return tuple(s for s in self.sentences if self.tail is None or s[0] < self.tail)


def name_forms(name: str) -> list[str]:
    """A character's name as it appears in prose: in full, and its first and last words (titles left out)."""
    words = [w for w in re.split(r"\s+", name.strip()) if w]
    forms = [" ".join(words)]
    plain = [w for w in words if w.lower().strip(".") not in TITLES and len(w) >= 3 and w[0].isupper()]
    if len(words) > 1 and plain:
        forms += [plain[0], plain[-1]]
    return list(dict.fromkeys(f for f in forms if f))


def find_impersonation(text: str, user: str, others: Iterable[str] = ()) -> Impersonation:
    """Where `text` (a post by another character) writes for `user`."""
    user_forms = tuple(name_forms(user))
    user_at = _mentions(text, user_forms)
    if not user_at:
        return Impersonation((), None)  # never named, so never written for (the common case, and fast)
    other_forms = tuple(f for name in others if name != user for f in name_forms(name) if f not in user_forms)
    other_at = _mentions(text, other_forms)
    speech = quoted(text)
    spans = sentences(text, speech)
    flags = []
    for start, end in spans:
        first = _first_word(text, start, end)
        mine = _within(user_at, start, end)
        theirs = _within(other_at, start, end)
        if mine and (_acts(text, first, end, mine, speech) or _speaks(text, start, mine, speech)):
            flags.append("user")
        elif (theirs and (_acts(text, first, end, theirs, speech) or _speaks(text, start, theirs, speech))) \
                or _first_person(text, start, speech):
            flags.append("other")
        else:
            flags.append("")
    impersonating = tuple(span for span, flag in zip(spans, flags) if flag == "user")
    tail = None
    for index in range(len(spans) - 1, -1, -1):
        if flags[index] == "other":
            break
        if flags[index] == "user":
            tail = spans[index][0]
    return Impersonation(impersonating, tail)


def _mentions(text: str, forms: tuple[str, ...]) -> list[tuple[int, int]]:
    """Where the name forms occur as whole words, in order; a form inside a longer one found there ("Ilsa" in
    "Ilsa Marrow") is not counted again. Plain substring search: this runs on every post."""
    found = []
    for form in sorted(forms, key=len, reverse=True):
        at = text.find(form)
        while at >= 0:
            end = at + len(form)
            if (at == 0 or not _is_word(text[at - 1])) and (end == len(text) or not _is_word(text[end])) and not any(
                    a <= at and end <= b for a, b in found):
                found.append((at, end))
            at = text.find(form, at + 1)
    return sorted(found)


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _within(mentions: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    low = bisect_left(mentions, (start, -1))
    high = bisect_left(mentions, (end, -1), low)
    return mentions[low:high]


def _first_word(text: str, start: int, end: int) -> int:
    """Where a sentence's first word starts, its leading markup and connectives ("Then", "But") skipped."""
    position = _LEAD.match(text, start, end).end()
    for _ in range(3):
        word = _WORD.match(text, position, end)
        if word is None or word.group().lower() not in CONNECTIVES:
            break
        following = _CONNECTIVE_GAP.match(text, word.end(), end).end()
        if following >= end or not _WORD.match(text, following, end):
            break
        position = following
    return position


def _acts(text: str, first: int, end: int, mentions: list[tuple[int, int]], speech: list[tuple[int, int]]) -> bool:
    """The sentence opens with one of the mentions as its actor (not inside quoted speech)."""
    mention = next(((a, b) for a, b in mentions if a == first), None)
    if mention is None or inside(first, speech):
        return False
    after = text[mention[1]:min(end, mention[1] + 120)]
    if after[:1] in (":", " ", "\t") and re.match(r"[ \t]*:", after) and (first == 0 or text[first - 1] == "\n"):
        return True  # the chat form: `Name: what they say`
    if re.match(r"['\u2019]s\b", after):
        return True  # "Ilsa's hand went to her sword."
    found = _WORD.findall(after)
    rest = [w.lower() for w in found]
    if rest[:1] == ["and"] and len(rest) > 2:
        rest = rest[2:]  # "Ilsa and Corvin walked on"
    while len(rest) > 1 and (rest[0] in ADVERBS or rest[0].endswith("ly")):
        rest = rest[1:]
    if not rest:
        return False
    verb = rest[0]
    if verb in ACTION or verb in SPEECH:
        return True
    name = text[mention[0]:mention[1]].lower()
    if name in ABSTRACT or verb in _NOT_ACTORS:
        return False
    # a name opening a sentence, then a verb or an aside: the one who acts
    return verb in AUX or after.lstrip(" \t")[:1] == "," or found[0][:1].islower()


def _speaks(text: str, start: int, mentions: list[tuple[int, int]], speech: list[tuple[int, int]]) -> bool:
    """One of the mentions with a speech verb after it ("Ilsa said"), or in a dialogue tag after quoted speech
    (', said Ilsa'), outside quoted speech. A speech verb before the name elsewhere makes it the one spoken to
    ("Corvin told Ilsa")."""
    for at, after_name in mentions:
        if inside(at, speech):
            continue
        after = _WORD.search(text, after_name, after_name + 20)
        if after is not None and after.group().lower() in SPEECH and not text[after_name:after.start()].strip(" \t"):
            return True
        tag = _TAG_BEFORE.search(text, max(start, at - 30), at)
        if tag is not None and tag.group(1).lower() in SPEECH:
            return True
    return False


def _first_person(text: str, start: int, speech: list[tuple[int, int]]) -> bool:
    """A sentence told by its writer in the first person: the writer's own character acts ("I" in quoted speech
    is whoever speaks)."""
    found = re.match(r"[\s*_]*(I|We)\b(?!['\u2019]ll be)", text[start:start + 8])
    return found is not None and not inside(start + found.start(1), speech)


def impersonation_start(text: str, user_names: Iterable[str]) -> Optional[int]:
    """Where the first line that speaks as one of `user_names` (`Name:` at a line start) begins, or None."""
    names = [re.escape(n.strip()) for n in user_names if n and n.strip()]
    if not names:
        return None
    found = re.search(rf"(?:^|\n)[ \t]*(?:{'|'.join(names)})[ \t]*:", text, re.IGNORECASE)
    if found is None:
        return None
    return found.start() + (1 if text[found.start()] == "\n" else 0)


def impersonation_cut(text: str, user_names: Iterable[str], others: Iterable[str] = ()) -> Optional[int]:
    """Where a generated reply starts writing for the user's character, or None: the first line that speaks as
    them (`Name:`), or the start of the impersonating tail `find_impersonation` finds, whichever comes first. The
    one detector behind `prepare`'s data.quality.impersonation, `grouprp chat`'s reply cleanup and the
    impersonation share of `grouprp eval`."""
    names = [n for n in user_names if n and n.strip()]
    cuts = [impersonation_start(text, names)]
    others = list(others)
    cuts += [find_impersonation(text, name, others).tail for name in names]
    found = [c for c in cuts if c is not None]
    return min(found) if found else None


def without_speaker_prefix(text: str, name: str) -> tuple[str, bool]:
    """The text without a leading `Name:` for the character who speaks it (a model that learned the name and
    repeats it), and whether there was one."""
    found = re.match(rf"\s*{re.escape(name.strip())}[ \t]*:[ \t]*", text, re.IGNORECASE) if name.strip() else None
    if found is None:
        return text, False
    return text[found.end():], True
