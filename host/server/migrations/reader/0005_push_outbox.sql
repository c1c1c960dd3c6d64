-- Pushes (docs/pushers.md): a plugin's `push` effects are written to push_outbox in the same
-- transaction as its cursor, so a batch's pushes exist exactly once however often the batch is
-- retried or the reader restarts. The delivery worker sends them in id order per destination
-- (and per key), deletes each once its destination answered 2xx, and moves those it gives up
-- on to push_dead.

CREATE TABLE push_outbox (
    -- The order pushes were committed in: delivery follows it per (destination, key).
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    plugin          TEXT    NOT NULL,
    destination     TEXT    NOT NULL,
    -- Sent as `Idempotency-Key`.
    key             TEXT    NOT NULL,
    body            BLOB    NOT NULL,
    -- The batch that made it: its stream and last token.
    stream          TEXT    NOT NULL,
    token           BIGINT  NOT NULL,
    created_ms      BIGINT  NOT NULL,
    -- Attempts that failed so far.
    attempts        BIGINT  NOT NULL DEFAULT 0,
    -- Not sent again before this time (back-off, Retry-After).
    next_attempt_ms BIGINT  NOT NULL DEFAULT 0,
    last_error      TEXT
);

CREATE INDEX push_outbox_by_destination ON push_outbox (destination, id);

-- Pushes given up on: an answer that is not worth retrying (4xx other than 429), or
-- max_attempts or max_age_s passed. The admin API lists, retries (back to push_outbox) and
-- drops them.
CREATE TABLE push_dead (
    id              INTEGER PRIMARY KEY,
    plugin          TEXT    NOT NULL,
    destination     TEXT    NOT NULL,
    key             TEXT    NOT NULL,
    body            BLOB    NOT NULL,
    stream          TEXT    NOT NULL,
    token           BIGINT  NOT NULL,
    created_ms      BIGINT  NOT NULL,
    attempts        BIGINT  NOT NULL,
    next_attempt_ms BIGINT  NOT NULL,
    last_error      TEXT,
    died_ms         BIGINT  NOT NULL,
    reason          TEXT    NOT NULL
);

CREATE INDEX push_dead_by_destination ON push_dead (destination, id);
