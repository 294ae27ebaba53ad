-- The send claim (issue 12): which instance holds the right to hand an approved submission to the transport,
-- and since when (ISO 8601, UTC). Cleared by every state change.
ALTER TABLE submissions ADD COLUMN send_claimed_by TEXT;
ALTER TABLE submissions ADD COLUMN send_claimed_at TEXT;
