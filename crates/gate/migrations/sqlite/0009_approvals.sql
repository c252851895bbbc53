-- Human approval (issue 13): a grant may hold the changes it allows until an administrator approves each one.
ALTER TABLE grants ADD COLUMN approve INTEGER NOT NULL DEFAULT 0;

-- One held call. call_hash is SHA-256 over salt and the exact call (operation, controller, canonical targets, arguments), so an approval releases only that call. status: pending, approved, denied, expired, used.
CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    controller TEXT NOT NULL,
    operation TEXT NOT NULL,
    target TEXT,
    grant_id INTEGER,
    salt TEXT NOT NULL,
    call_hash TEXT NOT NULL,
    summary TEXT NOT NULL,
    args TEXT NOT NULL,
    request_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    decided_by TEXT,
    decided_ms INTEGER,
    reason TEXT,
    used_ms INTEGER
);
CREATE INDEX approvals_call ON approvals(agent, controller, operation, created_ms);
CREATE INDEX approvals_status ON approvals(status, expires_ms)
