-- The web console: administrators, their sessions, one-time login links and failed logins (rate limiting across replicas).

-- An administrator of the console: the password only as an argon2id PHC string.
CREATE TABLE admins (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    password_ms BIGINT NOT NULL
);

-- A console session: only the SHA-256 of its token is kept. Ends after idle_ms without a request, or at expires_ms.
CREATE TABLE console_sessions (
    token_hash TEXT PRIMARY KEY,
    admin_name TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    client_addr TEXT
);
CREATE INDEX console_sessions_admin ON console_sessions(admin_name);

-- A one-time login link (jgate console login): the SHA-256 of its token, used once, before expires_ms.
CREATE TABLE console_login_links (
    token_hash TEXT PRIMARY KEY,
    admin_name TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    used_ms BIGINT
);

-- Failed logins, per administrator name (scope name) and per client address (scope addr).
CREATE TABLE console_login_failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL,
    subject TEXT NOT NULL,
    time_ms BIGINT NOT NULL
);
CREATE INDEX console_login_failures_subject ON console_login_failures(scope, subject, time_ms);

-- The last connection test of each controller as the console ran it: shown in its controller list.
CREATE TABLE controller_tests (
    controller TEXT PRIMARY KEY,
    time_ms BIGINT NOT NULL,
    ok BIGINT NOT NULL,
    summary TEXT NOT NULL
)
