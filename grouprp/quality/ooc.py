"""Out-of-character text: the markers the cleaning rules recognize, as a yes/no for generated text."""

from __future__ import annotations

from grouprp.clean import cut_ooc, is_wholly_ooc, normalize_newlines


def has_ooc(text: str) -> bool:
    """True when the text is wholly OOC or holds an aside or trailing OOC line that cleaning would cut."""
    text = normalize_newlines(text)
    return is_wholly_ooc(text) or cut_ooc(text).strip() != text.strip()
