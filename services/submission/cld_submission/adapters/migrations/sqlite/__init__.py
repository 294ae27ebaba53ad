"""SQLite migrations, one folder per database file: ``NNNN_name.sql`` (0001 is the baseline in code)."""
