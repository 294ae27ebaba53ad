"""cld_ingest."""
