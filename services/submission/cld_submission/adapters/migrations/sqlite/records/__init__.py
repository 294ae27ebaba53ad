"""Migrations of ``records.sqlite3`` (``state.StateStore``)."""
