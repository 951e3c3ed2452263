"""Config dialects: one reader per MMAction2 config style, each a file registered in ``DIALECTS``.

A reader recognises its dialect by the config's shape and reads it into a
:class:`featx.config.ExtractionConfig`; it is the only place that knows the dialect's key paths.
"""
