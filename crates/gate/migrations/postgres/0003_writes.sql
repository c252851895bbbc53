-- Writes in flight and idempotency keys: the exactly-once trigger path and its reconciliation.

-- One row per agent write between its intent record and its outcome record.
CREATE TABLE pending_writes (
    request_id TEXT PRIMARY KEY,
    process_id TEXT NOT NULL,
    operation TEXT NOT NULL,
    controller TEXT NOT NULL,
    target TEXT,
    -- The queue item Jenkins answered with, recorded the moment a trigger is accepted.
    queue_id BIGINT,
    build_number BIGINT,
    -- The intent's audit entry (JSON): the outcome record is written from it.
    entry TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);

-- Trigger identities reserved before Jenkins is called.
CREATE TABLE idempotency_keys (
    agent TEXT NOT NULL,
    controller TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    request_id TEXT NOT NULL,
    -- reserved, accepted, done, failed, broken or unknown
    state TEXT NOT NULL,
    queue_id BIGINT,
    build_number BIGINT,
    -- done: the answer (JSON), failed/broken/unknown: the error text.
    answer TEXT,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (agent, controller, idem_key)
);

-- Live jgate processes: a write whose process stopped heartbeating is reconciled by another.
CREATE TABLE jgate_processes (
    process_id TEXT PRIMARY KEY,
    heartbeat_ms BIGINT NOT NULL
);
