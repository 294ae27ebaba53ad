"""The submission domain: pure rules and data (records, identity, lifecycle, dataset checks, deadlines, scope, the
DQ summary and its report page).

May import: the standard library, pydantic, ``cld_schemas`` and ``cld_governance``'s pure models. Never
``adapters``, ``service_layer`` or ``entrypoints``, and no runtime I/O: no sqlite3, no files, no Kafka, no HTTP,
no environment, no metrics.
"""
