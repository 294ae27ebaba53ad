-- Submissions, their DQ summaries, manifests, row findings and the outbox of lifecycle events (repository.py's
-- SQLite schema, in PostgreSQL), with the send claim (at most one instance hands a submission to the transport)
-- and the outbox lease (one drainer at a time).
CREATE TABLE submissions (
    submission_id TEXT PRIMARY KEY,
    la_code TEXT NOT NULL,
    period_start TEXT NOT NULL,
    period_end TEXT NOT NULL,
    state TEXT NOT NULL,
    version INTEGER NOT NULL,
    requested_at TEXT NOT NULL,
    body TEXT NOT NULL,
    send_claimed_by TEXT,
    send_claimed_at TIMESTAMPTZ
);
CREATE INDEX submissions_by_la ON submissions (la_code, requested_at);
CREATE TABLE summaries (submission_id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE manifests (
    submission_id TEXT NOT NULL,
    record_key TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    open_service INTEGER NOT NULL,
    event_id TEXT,
    opt_outs TEXT,
    source TEXT,
    PRIMARY KEY (submission_id, record_key)
);
CREATE TABLE row_findings (
    submission_id TEXT NOT NULL,
    row INTEGER NOT NULL,
    event_reference TEXT,
    findings_json TEXT NOT NULL,
    PRIMARY KEY (submission_id, row)
);
CREATE TABLE outbox (
    seq BIGSERIAL PRIMARY KEY,
    body TEXT NOT NULL,
    published INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_pending ON outbox (seq) WHERE published = 0;
