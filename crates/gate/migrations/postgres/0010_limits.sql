-- Rate limits and quotas (issue 13, docs/limits.md). A grant may cap the calls it decides per hour (NULL: no cap).
ALTER TABLE grants ADD COLUMN max_per_hour BIGINT;

-- An agent's limits (no row, or NULL: no limit). Goes with its agent.
CREATE TABLE agent_limits (
    agent_id BIGINT PRIMARY KEY REFERENCES agents(id) ON DELETE CASCADE,
    calls_per_minute BIGINT,
    triggers_per_hour BIGINT,
    updated_ms BIGINT NOT NULL
);

-- What was used of a limit in one fixed window, shared by every process on this store. scope names the limit: calls:AGENT, triggers:AGENT or grant:ID. Rows whose window ended are pruned.
CREATE TABLE limit_counters (
    scope TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    used BIGINT NOT NULL,
    PRIMARY KEY (scope, window_start)
);
CREATE INDEX limit_counters_end ON limit_counters(window_end)
