-- Build events from the Jenkins Notification plugin (issue 13, docs/events.md).

-- Each controller's hook secret: only its SHA-256, shown once when made. Goes with its controller.
CREATE TABLE hook_secrets (
    controller TEXT PRIMARY KEY REFERENCES controllers(name) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);

-- What the receiver answered, counted per controller (* for names that are no controller) and kind.
CREATE TABLE hook_counters (
    controller TEXT NOT NULL,
    kind TEXT NOT NULL,
    count INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    PRIMARY KEY (controller, kind)
);

-- Accepted events: wake-up hints for waits (never results), read by id after a reconnect, pruned after a day.
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    controller TEXT NOT NULL,
    job TEXT NOT NULL,
    number INTEGER NOT NULL,
    queue_id INTEGER,
    phase TEXT NOT NULL,
    status TEXT,
    time_ms INTEGER NOT NULL
);
CREATE INDEX events_time ON events(time_ms)
