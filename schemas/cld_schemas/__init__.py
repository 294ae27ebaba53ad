"""cld_schemas."""
