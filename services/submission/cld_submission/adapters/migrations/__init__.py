"""Numbered schema migrations of the submission service, one folder per engine (``pg.migrate``)."""
