"""Adapters of the submission service to the outside world: the record store and the submissions repository
(one module per engine: ``sqlite_record_store``, ``sqlite_repository``; ``stores`` opens them), storage faults,
the audit log, the submission file, domain metrics, and the transports (MESH, file export).

May import: ``domain``, ``cld_runtime``, ``cld_schemas``, ``cld_governance`` and third-party clients. Never
``service_layer`` or ``entrypoints``.
"""
