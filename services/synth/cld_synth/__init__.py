"""cld_synth: synthetic CLD data for tests, demos and benchmarks (never real people: NHS numbers 999...).

Depends only on ``cld_schemas`` (the specification as data): the CLI's ``cld generate``, the test tiers and the
benchmarks all import it from here.
"""

from cld_synth.generator import (
    DEFAULT_LA_CODE,
    InjectedError,
    generate_people,
    generate_rows,
)

__all__ = ["DEFAULT_LA_CODE", "InjectedError", "generate_people", "generate_rows"]
