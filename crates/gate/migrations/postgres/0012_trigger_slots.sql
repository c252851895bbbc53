-- Identical triggers (controller, job, parameters) serialised across processes and replicas (issue 13): Jenkins merges a second identical trigger into one still waiting in the queue, so each waits until the previous one's queue item has left it. fingerprint is the SHA-256 of the trigger's identity. holder is the request id of the write holding the slot (empty when free). A holder whose write is no longer open, or whose process stopped heartbeating, holds nothing. queue_id is the last trigger's queue item.
CREATE TABLE trigger_slots (
    fingerprint TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    queue_id BIGINT,
    taken_ms BIGINT NOT NULL
)
