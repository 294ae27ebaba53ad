"""cld_submission: the submission service, in four layers (each may import only the layers below it; import-linter's
``layers`` contract in pyproject.toml keeps it so):

- ``entrypoints``: the composition root (``entrypoints.app.create_app``), settings, HTTP routes, Kafka consumers,
  the rebuild command;
- ``service_layer``: the use cases (records in, requests, approval and delivery, exports);
- ``adapters``: storage engines, the audit log, the submission file, metrics, transports;
- ``domain``: pure rules and data (records, identity, lifecycle, checks, deadlines, scope).
"""
