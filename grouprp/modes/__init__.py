"""The training modes, and the one place that picks the mode for a config (`data.mode`, from the template)."""

from __future__ import annotations

from grouprp.config import Config
from grouprp.modes.base import ExampleRow, Mode, Outcome
from grouprp.modes.group import GroupMode
from grouprp.modes.single import SingleCharacterMode

MODES: dict[str, type[Mode]] = {"group": GroupMode, "single_character": SingleCharacterMode}


def get_mode(cfg: Config) -> Mode:
    """The mode that reads and builds this config's examples."""
    return MODES[cfg.data.mode](cfg)


__all__ = ["ExampleRow", "MODES", "Mode", "Outcome", "get_mode"]
