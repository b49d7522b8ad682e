"""grouprp: fine-tune roleplay language models with LoRA on group forum threads and visual-novel scripts."""

__version__ = "0.1.0"
