CREATE TABLE audit_keys (
    version INTEGER PRIMARY KEY,
    sealed TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE jgate_meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE audit_checkpoints (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    key_version INTEGER NOT NULL,
    mac TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
