"""cld_runtime."""
