-- Controller life cycle (issue #10): per-controller request timeout and OS trust store, and the
-- generation number every running jgate polls to drop cached connections of changed controllers.

-- Seconds per Jenkins request (--timeout), NULL = the default.
ALTER TABLE controllers ADD COLUMN timeout_secs BIGINT;
-- 1 = also trust the operating system's certificate store (--system-ca).
ALTER TABLE controllers ADD COLUMN system_ca BIGINT NOT NULL DEFAULT 0;
-- One row, bumped in the same transaction as every controller update or removal.
CREATE TABLE controller_generation (
    id BIGINT PRIMARY KEY,
    generation BIGINT NOT NULL
);
INSERT INTO controller_generation (id, generation) VALUES (1, 0)
