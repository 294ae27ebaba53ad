"""Migrations of ``submissions.sqlite3`` (``repository.Repository``)."""
