"""cld_submission."""
