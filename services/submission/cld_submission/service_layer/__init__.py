"""The submission service layer: the use cases (records in, requests, approval, delivery, exports), over injected
adapters. No Kafka, HTTP or environment here, and no SQL: transactions go through an adapter's unit of work
(e.g. ``Repository.manifest``).

May import: ``domain`` and ``adapters``. Never ``entrypoints``.
"""
