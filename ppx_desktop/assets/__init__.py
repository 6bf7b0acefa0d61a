"""Model assets: the text tokenizer, Hub downloads, voices, persona prompts and bundled resources."""

from .resources import resources_dir

__all__ = ["resources_dir"]
