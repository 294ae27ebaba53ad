"""cld_pseudonymisation."""
