"""Data quality: detectors of what roleplay data gets wrong, shared by prepare, chat and eval."""

from grouprp.quality.impersonation import (find_impersonation, impersonation_cut, impersonation_start,
                                           without_speaker_prefix)
from grouprp.quality.ooc import has_ooc, ooc_spans

__all__ = ["find_impersonation", "has_ooc", "impersonation_cut", "impersonation_start", "ooc_spans",
           "without_speaker_prefix"]
