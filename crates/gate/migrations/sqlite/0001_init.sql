CREATE TABLE controllers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    base_url TEXT NOT NULL,
    username TEXT NOT NULL,
    secret_kind TEXT NOT NULL,
    sealed_token TEXT NOT NULL,
    tls_ca_pem TEXT,
    tls_insecure INTEGER NOT NULL DEFAULT 0,
    allow_private TEXT NOT NULL DEFAULT '[]',
    jenkins_version TEXT,
    plugins TEXT NOT NULL DEFAULT '[]',
    created_ms INTEGER NOT NULL
);
CREATE TABLE agents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL
);
CREATE TABLE agent_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id INTEGER NOT NULL REFERENCES agents(id),
    key_id TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    revoked_ms INTEGER,
    last_used_ms INTEGER
);
CREATE TABLE grants (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id INTEGER NOT NULL REFERENCES agents(id),
    controller TEXT,
    grp TEXT NOT NULL,
    level TEXT NOT NULL,
    jobs TEXT,
    params TEXT NOT NULL DEFAULT '[]',
    created_ms INTEGER NOT NULL
);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    agent TEXT NOT NULL,
    controller TEXT NOT NULL,
    operation TEXT NOT NULL,
    phase TEXT NOT NULL,
    allowed INTEGER NOT NULL,
    record TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_agent ON audit(agent, seq);
CREATE INDEX audit_time ON audit(time_ms);
