-- MCP sessions of clients on protocol revisions before 2026-07-28, shared by replicas (issue 13): a replica that does not know a session restores it from here (rmcp replays the stored initialize parameters) if the same agent presents it. id_hash is the SHA-256 of the session id. agent is empty until the replica that opened the session has bound it to its agent.
CREATE TABLE mcp_sessions (
    id_hash TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    state TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    used_ms BIGINT NOT NULL
);
CREATE INDEX mcp_sessions_used ON mcp_sessions(used_ms)
