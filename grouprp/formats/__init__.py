"""Prompt formats, looked up by name. Each renders one entry into an Example: text plus trained spans."""

from __future__ import annotations

from grouprp.formats.alichat import AliChat
from grouprp.formats.base import Format, TextBuilder
from grouprp.formats.group import ChatML, Lyra

FORMATS: dict[str, type[Format]] = {f.name: f for f in (Lyra, ChatML, AliChat)}


def get_format(name: str, train_on_names: bool, **options) -> Format:
    """The format registered under `name` (the value of `data.template`); options go to its constructor."""
    if name not in FORMATS:
        raise KeyError(f"unknown template {name!r}; known: {', '.join(FORMATS)}")
    return FORMATS[name](train_on_names=train_on_names, **options)


__all__ = ["FORMATS", "Format", "TextBuilder", "get_format"]
