"""cld_cli."""
