"""Entry points of the submission process: the one composition root (``app.create_app``), its settings
(``settings.SubmissionSettings``, read once), the HTTP API (``api``), the Kafka consumers (``consumers``) and the
rebuild command (``rebuild``). Wiring and translation only: no business rule lives here.

May import every other layer. Nothing in the package imports ``entrypoints`` (only ``__main__``, the CLI and tests).
"""
