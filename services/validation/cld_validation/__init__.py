"""cld_validation."""
