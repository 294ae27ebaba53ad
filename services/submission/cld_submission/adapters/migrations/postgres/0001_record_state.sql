-- The record state (state.py's SQLite schema, in PostgreSQL): one row per (LA, record key), the events seen,
-- the pseudonymised forms for exports, and per (topic, partition) the next Kafka offset to apply.
-- Dates are ISO text (text comparison is date comparison, as in SQLite); flags are 0/1 integers.
CREATE TABLE records (
    la_code TEXT NOT NULL,
    record_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    event_type TEXT,
    client_type TEXT,
    person_key TEXT,
    start_date TEXT,
    der_end_date TEXT,
    death_date TEXT,
    event_id TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    kafka_partition INTEGER,
    kafka_offset BIGINT,
    received_at TEXT NOT NULL,
    withdrawn INTEGER NOT NULL DEFAULT 0,
    opt_out INTEGER NOT NULL DEFAULT 0,
    opt_outs TEXT NOT NULL DEFAULT '',
    failed INTEGER NOT NULL DEFAULT 0,
    content_hash TEXT NOT NULL,
    record_json TEXT NOT NULL,
    findings_json TEXT NOT NULL,
    PRIMARY KEY (la_code, record_key)
);
CREATE INDEX records_by_person ON records (la_code, person_key);
CREATE TABLE links (
    la_code TEXT NOT NULL,
    record_key TEXT NOT NULL,
    linked_person_key TEXT NOT NULL,
    PRIMARY KEY (la_code, record_key, linked_person_key)
);
CREATE INDEX links_by_person ON links (la_code, linked_person_key);
CREATE TABLE seen_events (
    la_code TEXT NOT NULL,
    source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (la_code, source, event_id)
);
CREATE TABLE pseudonymised (
    la_code TEXT NOT NULL,
    source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    key_id TEXT NOT NULL,
    record_json TEXT NOT NULL,
    PRIMARY KEY (la_code, source, event_id, purpose)
);
CREATE TABLE offsets (
    topic TEXT NOT NULL,
    kafka_partition INTEGER NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (topic, kafka_partition)
);
-- The record-key secret (HMAC key of record and person keys), shared by every instance: with a secret per
-- instance two instances would key the same record differently. One row.
CREATE TABLE record_key_secret (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    secret BYTEA NOT NULL
);
