"""One module per backbone family; each registers its classes in ``featx.registry.MODELS``."""
