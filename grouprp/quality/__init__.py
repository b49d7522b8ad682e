"""Data quality: detectors of what roleplay data gets wrong, shared by prepare, chat and eval."""

from grouprp.quality.impersonation import impersonation_start, without_speaker_prefix
from grouprp.quality.ooc import has_ooc

__all__ = ["has_ooc", "impersonation_start", "without_speaker_prefix"]
