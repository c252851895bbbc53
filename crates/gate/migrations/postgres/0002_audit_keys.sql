CREATE TABLE audit_keys (
    version BIGINT PRIMARY KEY,
    sealed TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE jgate_meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    key_version BIGINT NOT NULL,
    mac TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
