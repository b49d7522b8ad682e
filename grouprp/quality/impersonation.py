"""Impersonation: a model turn that writes for the user's character.

The clearest sign, and the one a front-end user cuts by hand today, is a line that begins with the user's
character's name and a colon: the model has started the user's next post.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional


def impersonation_start(text: str, user_names: Iterable[str]) -> Optional[int]:
    """Where the first line that speaks as one of `user_names` (`Name:` at a line start) begins, or None."""
    names = [re.escape(n.strip()) for n in user_names if n and n.strip()]
    if not names:
        return None
    found = re.search(rf"(?:^|\n)[ \t]*(?:{'|'.join(names)})[ \t]*:", text, re.IGNORECASE)
    if found is None:
        return None
    return found.start() + (1 if text[found.start()] == "\n" else 0)


def without_speaker_prefix(text: str, name: str) -> tuple[str, bool]:
    """The text without a leading `Name:` for the character who speaks it (a model that learned the name and
    repeats it), and whether there was one."""
    found = re.match(rf"\s*{re.escape(name.strip())}[ \t]*:[ \t]*", text, re.IGNORECASE) if name.strip() else None
    if found is None:
        return text, False
    return text[found.end():], True
