"""Recognizers and backbones, built from a config's ``model`` dict through ``featx.registry.MODELS``."""
